"""`python -m demo`: the main job on its embedded defaults, for real, on a machine with no GPU and no hub.

It builds a tiny random Qwen2 model, its tokenizer and small local datasets shaped like the seed's three
(demo/tiny_model.py, run on swift's own python so the bot never imports torch), points the fixed LLM recipe at
them through a config file, and drives the console: dry run, the job (queued, running with progress,
succeeded), the export of its last checkpoint, then one question asked of the exported model.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from bot.console import Console
from runner.child_env import child_env
from runner.config import load_config
from runner.config_schema import toml_value
from runner.runtime import Runtime
from runner.swift_version import interpreter_of, resolve_swift

# The fixed recipe, changed only where a 2-core CPU and a 0.2M-parameter model need it: the local mirror of
# model and data, float32 (bf16 on CPU is 2x slower), and larger micro-batches with the same 16 samples a step.
TINY_RECIPE: dict[str, object] = {
    "model_type": "qwen2",
    "template": "qwen2_5",
    "torch_dtype": "float32",
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 2,
    "gradient_checkpointing": False,
    "dataloader_num_workers": 0,
    "max_length": 512,
    "save_steps": 10,
    "eval_steps": 10,
    "split_dataset_ratio": 0.05,
}
# The VLM recipe on the tiny Qwen2.5-VL (demo/tiny_model.py): small images, a short run.
TINY_VLM_RECIPE: dict[str, object] = {
    "model_type": "qwen2_5_vl",
    "template": "qwen2_5_vl",
    "torch_dtype": "float32",
    "gradient_accumulation_steps": 2,
    "gradient_checkpointing": False,
    "dataloader_num_workers": 0,
    "max_length": 512,
    "save_steps": 5,
    "logging_steps": 2,
}


DEMO_QUESTION = "Who are you?"  # the self-cognition question the fixed recipe trains for


def default_swift_bin() -> str:
    """The swift beside this python (the project venv), else whatever `swift` is on PATH."""
    beside = Path(sys.executable).parent / "swift"
    return str(beside) if beside.exists() else "swift"


def build_tiny_assets(root: Path, swift_bin: str, kind: str = "llm") -> dict[str, object]:
    """Build (once) the tiny model and data with the python that runs swift; returns the assets as a dict."""
    python = interpreter_of(resolve_swift(swift_bin)) or [sys.executable]
    out = subprocess.run(
        [*python, "-m", "demo.tiny_model", kind, str(root)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
        env=child_env(),
    )
    if out.returncode != 0:
        raise RuntimeError(f"building the tiny model failed:\n{out.stderr[-3000:]}")
    result: dict[str, object] = json.loads(out.stdout)
    return result


def tiny_config_toml(
    assets: Mapping[str, object],
    *,
    swift_bin: str,
    extra: Mapping[str, object] | None = None,
    sections: str = "",
    kind: str = "llm",
) -> str:
    """A trainbot config pointing the fixed LLM recipe (or the VLM one) at the tiny local model (demo, tests)."""
    tiny = TINY_RECIPE if kind == "llm" else TINY_VLM_RECIPE
    recipe: dict[str, object] = {"model": assets["model_dir"], "dataset": assets["datasets"], **tiny, **(extra or {})}
    lines = [
        "[swift]",
        f"bin = {json.dumps(swift_bin)}",
        "offline = true",
        "[swift.env]",
        'OMP_NUM_THREADS = "1"',
        'TOKENIZERS_PARALLELISM = "false"',
        "[runner]",
        "progress_poll_seconds = 0.5",
        f"[{kind}]",
    ]
    lines += [f"{key} = {toml_value(value)}" for key, value in recipe.items()]
    return "\n".join(lines) + "\n" + sections


async def run_demo(root: Path) -> int:
    started = time.monotonic()
    swift_bin = default_swift_bin()
    print(f"demo in {root}: building a tiny Qwen2 model and local datasets…", flush=True)
    assets = build_tiny_assets(root / "assets", swift_bin)
    config_path = root / "trainbot.toml"
    config_path.write_text(tiny_config_toml(assets, swift_bin=swift_bin))
    config = load_config(config_path, base_dir=root)
    print(f"config: {config_path} (the fixed recipe, pointed at the local model and data)\n", flush=True)
    runtime = await Runtime.open(config)
    console = Console(runtime, sys.stdout)
    await console.open()
    await runtime.start()
    t0 = time.monotonic()
    try:
        for line in ("help llm", "llm gpu=cpu out=output/demo --dry-run"):
            console.say(f"train> {line}")
            await console.command(line)
        console.say("train> llm gpu=cpu out=output/demo")
        reply = await console.command("llm gpu=cpu out=output/demo")
        if not reply.ok or reply.job_id is None:
            return 1
        await console.watch(until_idle=True)
        job = await runtime.store.require(reply.job_id)
        if job.state != "succeeded":
            console.say(f"train> logs {job.id}")
            await console.command(f"logs {job.id}")
            return 1
        runtime.tries.keep_warm()  # swift's inference imported meanwhile, as a GPU machine does at start
        for line in (f"export {job.id}", f"show {job.id}", "list"):
            console.say(f"train> {line}")
            await console.command(line)
            await console.watch(until_idle=True)
        job = await runtime.store.require(job.id)
        exported = time.monotonic()
        await runtime.tries.warm_ready()
        line = f"try {job.id} max_tokens=48 {DEMO_QUESTION}"  # the exported model, asked (a tiny model: babble)
        console.say(f"train> {line}")
        asked = time.monotonic()
        await console.command(line)
        answered = console.last_answer is not None and bool(console.last_answer.answers[0].text)
        asked = time.monotonic() - asked
    finally:
        await console.leave()
        await runtime.close()
    print(
        f"\ndemo done: job {job.id} {job.state}, export {job.export_state}, answered: "
        f"{'yes' if answered else 'no'}; {exported - t0:.0f} s from launch to export, "
        f"{asked:.1f} s from `try` to the whole answer ({time.monotonic() - started:.0f} s with set-up)"
    )
    return 0 if job.export_state == "exported" and answered else 1


def main(root: Path) -> int:
    root.mkdir(parents=True, exist_ok=True)
    return asyncio.run(run_demo(root))
