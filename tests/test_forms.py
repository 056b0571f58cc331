"""The New job form in a real browser (headless chromium) against `trainbot serve` (fake swift, one GPU): every
error at once by its field, labels in words, the recipe's values as placeholders, number inputs, a preview that
refuses what Start would, and a GPU picker that tells free, in use and promised apart."""

from __future__ import annotations

from pathlib import Path

import requests
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from tests.api_env import serving
from tests.browser import attr, browser, sign_in, text_of
from tests.slack_env import fake_config
from tests.waiting import wait_until_sync

TOKENS = {"TRAINBOT_API_TOKENS": "tok-ann=UANN"}
ANN = {"Authorization": "Bearer tok-ann"}


def _type(driver: Chrome, name: str, text: str) -> None:
    field = driver.find_element(By.NAME, name)
    field.clear()
    field.send_keys(text)


def _field_errors(driver: Chrome) -> dict[str, dict[str, object]]:
    """Each field shown in error: its error's words, whether the field names it (aria-describedby) and holds it."""
    return dict(
        driver.execute_script("""
        const out = {};
        for (const err of document.querySelectorAll('.field-error')) {
          const name = err.id.slice(4);
          const field = document.getElementById(name === 'gpus' ? 'gpu-0' : 'f-' + name);
          const box = err.closest(name === 'gpus' ? 'fieldset' : '.field');
          out[name] = {words: err.textContent.trim(), described: (field.getAttribute('aria-describedby') || '')
                         .split(' ').includes(err.id), invalid: field.getAttribute('aria-invalid') === 'true',
                       beside: box !== null && box.contains(field)};
        }
        return out;""")
    )


def test_every_form_error_is_shown_by_its_field_and_the_preview_refuses_what_start_would(tmp_path: Path) -> None:
    fake_config(tmp_path, gpus=1, steps=400, step_s=0.2, sections="[http]\nallow_anonymous_loopback = false\n")
    with serving(tmp_path, TOKENS) as api, browser(tmp_path / "chrome", width=1200, height=700) as driver:
        running = requests.post(
            f"{api.url}/training/llm/jobs",
            headers=ANN,
            timeout=10,
            json={"gpu_id": "0", "output_dir": "output/busy", "start": True},
        ).json()["job_id"]
        queued = requests.post(
            f"{api.url}/training/llm/jobs",
            headers=ANN,
            timeout=10,
            json={"gpu_id": "0", "output_dir": "output/next", "start": True},
        ).json()["job_id"]
        sign_in(driver, api.url, "tok-ann")
        driver.get(f"{api.url}/new?kind=vlm")
        gpu = text_of(driver, "label.gpu:has(#gpu-0)")
        assert f"in use by job {running}; promised next to queued job {queued}" in gpu, gpu
        assert text_of(driver, "label.gpu:has(#gpu-cpu)").endswith("free")
        # labels in words, the swift flag as a hint, the recipe's value as the placeholder, numbers as numbers
        assert text_of(driver, "label[for=f-lora_rank]") == "LoRA rank"
        assert "--lora_rank" in text_of(driver, "#help-lora_rank")
        assert attr(driver, "#f-lora_rank", "placeholder") == "8" and attr(driver, "#f-lora_rank", "type") == "number"
        assert attr(driver, "#f-learning_rate", "placeholder") == "1e-4"
        assert attr(driver, "#f-learning_rate", "type") == "number"
        assert attr(driver, "#f-dataset", "placeholder") == "AI-ModelScope/LaTeX_OCR#2000"
        assert attr(driver, "#f-max_pixels", "placeholder") == "1003520"

        _type(driver, "out", "/etc")  # outside the output folder
        _type(driver, "model", "bad model")
        _type(driver, "learning_rate", "5")
        _type(driver, "lora_rank", "0")
        driver.find_element(By.ID, "preview-button").click()  # and no GPU ticked
        wait_until_sync(lambda: text_of(driver, "#form-error"), 20, "the form's answer")
        errors = _field_errors(driver)
        assert set(errors) == {"gpus", "out", "model", "learning_rate", "lora_rank"}, errors  # all at once
        for name, error in errors.items():
            assert error["described"] and error["invalid"] and error["beside"], (name, error)
        assert "Pick at least one GPU" in str(errors["gpus"]["words"])
        assert "Output folder “/etc” leads to /etc, outside the output folder" in str(errors["out"]["words"])
        assert str(errors["learning_rate"]["words"]) == "Learning rate “5” is not a number above 0 and at most 1."
        assert str(errors["lora_rank"]["words"]) == "LoRA rank “0” is not a whole number from 1 to 1024."
        assert "5 things to fix" in text_of(driver, "#form-error")
        for words in errors.values():
            assert str(words["words"]) in text_of(driver, "#form-error")  # the summary names each too
        assert driver.execute_script("return document.activeElement.id") == "gpu-0"  # focus on the first
        assert driver.execute_script(
            "const r = document.activeElement.getBoundingClientRect();"
            "return r.top >= 0 && r.bottom <= window.innerHeight"
        )  # in view
        assert not any(c in text_of(driver, "#form-error") for c in ("`", "/train", "out="))  # a form's words
        assert text_of(driver, "#preview") == "" and not driver.find_elements(By.ID, "start-button")
        driver.save_screenshot(str(tmp_path / "form-errors.png"))

        driver.find_element(By.ID, "gpu-cpu").click()
        for name in ("model", "learning_rate", "lora_rank"):
            driver.find_element(By.NAME, name).clear()
        _type(driver, "out", "output/busy")  # the running job's folder: Start would refuse it, so does the preview
        driver.find_element(By.ID, "preview-button").click()
        # the answer before also marked `out`: wait for this answer's words
        wait_until_sync(lambda: "still active" in str(_field_errors(driver).get("out")), 20, "the folder refused")
        words = str(_field_errors(driver)["out"]["words"])
        assert f"Job {running} is still active and writes to" in words and "output/busy" in words, words
        assert text_of(driver, "#preview") == "" and not driver.find_elements(By.ID, "start-button")
        assert driver.execute_script("return document.activeElement.id") == "f-out"

        _type(driver, "out", "output/fine")
        driver.find_element(By.ID, "preview-button").click()
        wait_until_sync(lambda: "sft" in text_of(driver, "#preview"), 20, "the preview")
        assert _field_errors(driver) == {} and driver.find_elements(By.ID, "start-button")
        jobs = requests.get(f"{api.url}/training/all/jobs", headers=ANN, timeout=10).json()["jobs"]
        assert len(jobs) == 2  # neither the refused forms nor the preview made a job
        for job in (queued, running):
            requests.post(f"{api.url}/training/jobs/{job}/stop", headers=ANN, timeout=10)
        wait_until_sync(
            lambda: (
                requests.get(f"{api.url}/training/jobs/{running}/status", headers=ANN, timeout=10).json()["status"]
                == "stopped"
            ),
            30,
            "the running job to stop",
        )
