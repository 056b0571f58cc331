"""Tests for demo.tiny_model: the offline tiny Qwen2 assets the demo and the swift tests use.

They build in-process (torch/transformers/tokenizers in the test interpreter). The real `swift sft` / `swift export`
on these assets runs through trainbot itself in tests/test_runner.py, and on the tiny Qwen2.5-VL in tests/test_vlm.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from demo import tiny_model as demo_assets
from demo.tiny_model import LlmAssets, build_llm_assets

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.swift]  # builds a model with torch and transformers (seconds)


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
    code = "import sys, demo.tiny_model; sys.exit('torch' in sys.modules)"
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
    assert demo_assets.main(["llm", llm.root]) == 0
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
        f"<|im_start|>system\n{demo_assets.DEFAULT_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    msgs = [{"role": "system", "content": "S"}, *msgs, {"role": "assistant", "content": "yo"}]
    text = tok.apply_chat_template(msgs, tokenize=False)
    want = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n"
    assert text == want
