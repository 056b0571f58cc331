"""Tests for runner.tiny_assets: the offline tiny Qwen2 / Qwen2.5-VL assets the demo and swift tests use.

Fast tests build in-process (need torch/transformers/tokenizers in the test interpreter, else skipped).
``@pytest.mark.swift`` tests run the REAL ``swift sft`` / ``swift export`` CLI on the CPU, offline; they find
swift via ``TRAINBOT_SWIFT_BIN``, ``.venv/bin/swift`` or PATH and build the assets with swift's own python.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runner import tiny_assets
from runner.tiny_assets import LlmAssets, VlmAssets, build_llm_assets, build_vlm_assets

REPO = Path(__file__).resolve().parents[1]


def _need_ml() -> None:
    for mod in ("torch", "transformers", "tokenizers", "PIL"):
        pytest.importorskip(mod)


def _torchvision_problem() -> str | None:
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # CUDA wheel next to CPU torch raises RuntimeError, not ImportError
        return repr(exc)
    return None


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> LlmAssets:
    _need_ml()
    return build_llm_assets(tmp_path_factory.mktemp("tiny") / "llm")


@pytest.fixture(scope="module")
def tok(llm: LlmAssets) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(llm.model_dir)


def test_import_does_not_pull_torch() -> None:
    code = "import sys, runner.tiny_assets; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_llm_layout_and_datasets(llm: LlmAssets) -> None:
    model_dir = Path(llm.model_dir)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (model_dir / name).is_file(), name
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["model_type"] == "qwen2" and cfg["hidden_size"] == 64 and cfg["num_hidden_layers"] == 2
    paths = [d.rsplit("#", 1) for d in llm.datasets]
    assert [Path(p).name for p, _ in paths] == ["alpaca_zh.jsonl", "alpaca_en.jsonl", "self-cognition"]
    assert all(Path(p).is_absolute() and Path(p).exists() and n.isdigit() for p, n in paths)
    for p, n in paths[:2]:
        rows = [json.loads(line) for line in Path(p).read_text(encoding="utf-8").splitlines()]
        assert len(rows) == int(n) and set(rows[0]) == {"instruction", "input", "output"}
    cog = Path(paths[2][0]) / "train.jsonl"
    rows = [json.loads(line) for line in cog.read_text(encoding="utf-8").splitlines()]
    assert set(rows[0]) == {"query", "response", "tag"}
    assert all("{{NAME}}" in r["response"] and "{{AUTHOR}}" in r["response"] for r in rows)


def test_llm_idempotent_and_cli(llm: LlmAssets, capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.monotonic()
    assert build_llm_assets(Path(llm.root)) == llm
    assert tiny_assets.main(["llm", llm.root]) == 0
    assert time.monotonic() - t0 < 1.0  # the marker short-circuits: no torch work
    assert json.loads(capsys.readouterr().out) == {
        "root": llm.root,
        "model_dir": llm.model_dir,
        "datasets": llm.datasets,
    }


def test_tokenizer_round_trip(tok: Any) -> None:
    for text in ["hello world, the model data.", "你是谁？我是swift-robot。", "  spaces\tand\nnewlines  "]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"


def test_chat_template_renders(tok: Any) -> None:
    msgs = [{"role": "user", "content": "hi"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == (
        f"<|im_start|>system\n{tiny_assets.DEFAULT_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    msgs = [{"role": "system", "content": "S"}, *msgs, {"role": "assistant", "content": "yo"}]
    text = tok.apply_chat_template(msgs, tokenize=False)
    want = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n"
    assert text == want


def test_vlm_assets(tmp_path: Path) -> None:
    _need_ml()
    if problem := _torchvision_problem():
        pytest.skip(f"no usable torchvision: {problem}")
    from transformers import AutoProcessor

    vlm = build_vlm_assets(tmp_path / "vlm", n_rows=6)
    assert isinstance(vlm, VlmAssets) and build_vlm_assets(tmp_path / "vlm", n_rows=6) == vlm
    cfg = json.loads((Path(vlm.model_dir) / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    assert cfg["image_token_id"] == 151655  # swift's qwen2_5_vl template hard-codes it
    proc = AutoProcessor.from_pretrained(vlm.model_dir)
    assert proc.tokenizer.convert_tokens_to_ids("<|image_pad|>") == 151655
    path, n = vlm.datasets[0].rsplit("#", 1)
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    assert len(rows) == int(n) == 6
    assert "<image>" in rows[0]["messages"][0]["content"] and Path(rows[0]["images"][0]).is_file()
    from PIL import Image

    out = proc(text=["<|vision_start|><|image_pad|><|vision_end|>x"], images=[Image.open(rows[0]["images"][0])])
    assert out["image_grid_thw"].tolist() == [[1, 4, 4]]


# ----------------------------------------------------------------------------- real swift CLI (slow)


def _swift_bin() -> Path:
    for cand in (os.environ.get("TRAINBOT_SWIFT_BIN"), REPO / ".venv" / "bin" / "swift", shutil.which("swift")):
        if cand and Path(cand).is_file():
            return Path(cand)
    pytest.skip("swift CLI not found (set TRAINBOT_SWIFT_BIN)")


def _swift_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **extra}


def _build_with(swift: Path, kind: str, root: Path) -> dict[str, Any]:
    """Build with swift's interpreter, so the test process itself needs no torch."""
    cmd = [str(swift.parent / "python"), "-m", "runner.tiny_assets", kind, str(root)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True)
    return dict(json.loads(proc.stdout))


def _run(cmd: list[str], env: dict[str, str], log: Path) -> int:
    with log.open("w") as f:
        return subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, cwd=log.parent).returncode


LORA = ["--tuner_type", "lora", "--lora_rank", "8", "--lora_alpha", "32", "--target_modules", "all-linear"]
FAST = ["--check_model", "false", "--torch_dtype", "float32", "--num_train_epochs", "1"]
FAST += ["--dataloader_num_workers", "0", "--gradient_checkpointing", "false", "--report_to", "none"]


@pytest.mark.swift
def test_swift_sft_and_export_llm(tmp_path: Path) -> None:
    swift = _swift_bin()
    a = _build_with(swift, "llm", tmp_path / "assets")
    out = tmp_path / "out"
    cmd = [str(swift), "sft", "--model", a["model_dir"], "--model_type", "qwen2", "--template", "qwen2_5"]
    cmd += ["--dataset", *a["datasets"], *LORA, *FAST, "--learning_rate", "1e-4", "--max_length", "512"]
    cmd += ["--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "2"]
    cmd += ["--save_steps", "10", "--save_total_limit", "2", "--logging_steps", "5", "--output_dir", str(out)]
    cmd += ["--system", "You are a helpful assistant.", "--model_author", "swift", "--model_name", "swift-robot"]
    assert _run(cmd, _swift_env(), tmp_path / "sft.log") == 0, (tmp_path / "sft.log").read_text()[-3000:]
    (run_dir,) = out.glob("v0-*")
    assert {p.name for p in run_dir.glob("checkpoint-*")} == {"checkpoint-20", "checkpoint-29"}
    summary = json.loads((run_dir / "logging.jsonl").read_text().splitlines()[-1])
    assert summary["last_model_checkpoint"] == str(run_dir / "checkpoint-29") and summary["global_step"] == 29
    assert "swift-robot" in (tmp_path / "sft.log").read_text()  # self-cognition {{NAME}} was substituted
    cmd = [str(swift), "export", "--adapters", str(run_dir / "checkpoint-29"), "--merge_lora", "true"]
    assert _run(cmd, _swift_env(), tmp_path / "export.log") == 0, (tmp_path / "export.log").read_text()[-3000:]
    assert (run_dir / "checkpoint-29-merged" / "model.safetensors").is_file()


@pytest.mark.swift
def test_swift_sft_vlm(tmp_path: Path) -> None:
    swift = _swift_bin()
    probe = [str(swift.parent / "python"), "-c", "import torchvision, qwen_vl_utils"]
    res = subprocess.run(probe, capture_output=True, text=True)
    if res.returncode:
        pytest.skip(f"swift's env cannot run Qwen2.5-VL: {res.stderr.strip().splitlines()[-1:]}")
    a = _build_with(swift, "vlm", tmp_path / "assets")
    out = tmp_path / "out"
    cmd = [str(swift), "sft", "--model", a["model_dir"], "--model_type", "qwen2_5_vl"]
    cmd += ["--template", "qwen2_5_vl", "--dataset", *a["datasets"], *LORA, *FAST, "--freeze_vit", "true"]
    cmd += ["--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2", "--max_length", "512"]
    cmd += ["--save_steps", "5", "--save_total_limit", "2", "--logging_steps", "2", "--output_dir", str(out)]
    rc = _run(cmd, _swift_env(MAX_PIXELS="12544"), tmp_path / "sft.log")
    assert rc == 0, (tmp_path / "sft.log").read_text()[-3000:]
    assert "[151655 * 4]" in (tmp_path / "sft.log").read_text()  # 56x56 image -> 4 merged image tokens
    (run_dir,) = out.glob("v0-*")
    assert {p.name for p in run_dir.glob("checkpoint-*")} == {"checkpoint-10", "checkpoint-12"}
