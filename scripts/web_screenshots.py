"""The web page's screenshots in docs/ (web-jobs.png, web-job.png, web-compare.png): `trainbot serve` with stand-in
swift runs (tests/fake_swift.py) in a temporary folder, photographed by headless chromium at desktop width and saved
as small palette PNGs.

    PYTHONPATH=$PWD .venv/bin/python scripts/web_screenshots.py
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

import requests
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.api_env import serving  # noqa: E402  (the tests' stand-ins: a bench-like script, not the product)
from tests.browser import attr, browser, click, sign_in  # noqa: E402
from tests.slack_env import fake_config  # noqa: E402
from tests.waiting import wait_until_sync  # noqa: E402

DOCS = REPO / "docs"
WIDTH = 1200
TOKEN = {"Authorization": "Bearer tok-docs"}
VLM = "[vlm]\nmax_steps = 120\nsave_steps = 40\neval_steps = 20\nlogging_steps = 2\n"


def save(png: bytes, name: str, height: int) -> None:
    """The top `height` pixels, in 64 colours: a docs picture, not a photo."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image = image.crop((0, 0, image.width, min(height, image.height)))
    image.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(DOCS / name, optimize=True)
    print(f"{DOCS / name}: {(DOCS / name).stat().st_size // 1024} KiB")


def post(url: str, path: str, **body: object) -> str:
    reply = requests.post(f"{url}{path}", headers=TOKEN, json={"start": True, **body}, timeout=10)
    reply.raise_for_status()
    return str(reply.json()["job_id"])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fake_config(root, gpus=4, steps=300, save_steps=100, step_s=0.02, sections=VLM,
                    env={"FAKE_SWIFT_MEMORY_GIB": "21.4"})
        with serving(root, {"TRAINBOT_API_TOKENS": "tok-docs=UDOCS"}) as api, \
                browser(root / "chrome", width=WIDTH, height=1000) as driver:
            url = api.url
            runs = [post(url, "/training/jobs", gpu_id=str(n), output_dir=f"output/latex-ocr-lr{lr}",
                         name=f"LaTeX OCR, lr {lr}", learning_rate=float(lr), lora_rank=rank)
                    for n, (lr, rank) in enumerate((("1e-4", 8), ("3e-4", 8), ("5e-5", 16)))]
            for job in runs:
                wait_until_sync(lambda j=job: requests.get(f"{url}/training/jobs/{j}/status", headers=TOKEN,
                                                           timeout=10).json()["status"] == "succeeded", 120, "a run")
            live = post(url, "/training/llm/jobs", gpu_id="3", output_dir="output/qwen-7b-lora",
                name="Qwen 7B LoRA, the recipe")
            post(url, "/training/llm/jobs", gpu_id="3", output_dir="output/qwen-7b-lora-2")  # waits for GPU 3
            wait_until_sync(lambda: int(requests.get(f"{url}/training/jobs/{live}/status", headers=TOKEN,
                                                     timeout=10).json()["step"] or 0) >= 60, 60, "a live job")
            sign_in(driver, url, "tok-docs")
            for job in runs:
                click(driver, f"#job-{job} input.pick")
            time.sleep(0.5)
            save(driver.get_screenshot_as_png(), "web-jobs.png", 420)
            driver.set_window_size(WIDTH, 1300)
            driver.get(f"{url}/jobs/{runs[1]}")
            wait_until_sync(lambda: attr(driver, "#chart", "data-points"), 30, "the charts")
            time.sleep(1)
            save(driver.get_screenshot_as_png(), "web-job.png", 1020)
            driver.get(f"{url}/compare?" + "&".join(f"job={j}" for j in runs))
            wait_until_sync(lambda: attr(driver, "#compare-chart", "data-runs"), 30, "the chart")
            time.sleep(0.5)
            save(driver.get_screenshot_as_png(), "web-compare.png", 1180)
            for job in requests.get(f"{url}/training/all/jobs", headers=TOKEN, timeout=10).json()["jobs"]:
                if job["status"] in ("queued", "running"):
                    requests.post(f"{url}/training/jobs/{job['job_id']}/stop", headers=TOKEN, timeout=10)


if __name__ == "__main__":
    main()
