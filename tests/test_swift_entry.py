"""runner/swift_entry.py with the real swift on the tiny model: padding-free batches on sdpa learn what the seed's
batches learn, and swift itself still refuses them where our entry is not in the way."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from demo.run import default_swift_bin
from runner.swift_levers import MICRO_BATCH_TOKENS
from runner.swift_version import interpreter_of

pytestmark = pytest.mark.swift

REPO = Path(__file__).resolve().parent.parent
LAYOUTS = {  # the seed's 1 x 16 (nothing to pad); 8 x 2 padded to each micro-batch's longest; `fast`'s 8 x 2 with
    # padding-free micro-batches; `fast`'s micro-batches by tokens (each step's ~2100 tokens in 4, none over 600)
    "seed": ["--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "16"],
    "padded": ["--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "2"],
    "padding-free": [
        "--per_device_train_batch_size",
        "8",
        "--gradient_accumulation_steps",
        "2",
        "--padding_free",
        "true",
        "--attn_impl",
        "sdpa",
    ],
    "tokens": [
        "--per_device_train_batch_size",
        "8",
        "--gradient_accumulation_steps",
        "2",  # made 16 x 1 by tokens
        "--padding_free",
        "true",
        "--attn_impl",
        "sdpa",
    ],
}
ENV = {"tokens": {MICRO_BATCH_TOKENS: "600"}}


def sft_args(tiny: dict[str, Any], out: Path) -> list[str]:
    """4 steps of 16 samples (lengths 112-150 tokens), float32 and no LoRA dropout, so that layouts that compute
    the same thing give the same losses (dropout's random masks follow the micro-batches)."""
    data = tiny["datasets"][1].split("#")[0] + "#64"
    return [
        "--model",
        tiny["model_dir"],
        "--model_type",
        "qwen2",
        "--template",
        "qwen2_5",
        "--dataset",
        data,
        "--tuner_type",
        "lora",
        "--lora_rank",
        "8",
        "--lora_alpha",
        "32",
        "--lora_dropout",
        "0",
        "--target_modules",
        "all-linear",
        "--learning_rate",
        "1e-2",
        "--num_train_epochs",
        "1",
        "--max_length",
        "2048",
        "--logging_steps",
        "1",
        "--save_steps",
        "1000",
        "--torch_dtype",
        "float32",
        "--dataloader_num_workers",
        "0",
        "--split_dataset_ratio",
        "0",
        "--report_to",
        "none",
        "--seed",
        "42",
        "--output_dir",
        str(out),
    ]


async def run(argv: list[str], log: Path, extra: dict[str, str] | None = None) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TRAINBOT_"))}
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=out, stderr=asyncio.subprocess.STDOUT, env=env | {"HF_HUB_OFFLINE": "1"} | (extra or {})
        )
        return await asyncio.wait_for(proc.wait(), 300)


def losses(out: Path) -> list[float]:
    lines = [json.loads(line) for line in next(out.glob("*/logging.jsonl")).read_text().splitlines()]
    return [line["loss"] for line in lines if "loss" in line]


async def test_padding_free_and_token_micro_batches_learn_what_the_seeds_batches_learn(
    tmp_path: Path, tiny_llm: dict[str, Any]
) -> None:
    swift = default_swift_bin()
    python = interpreter_of(Path(swift))
    assert python is not None
    entry = [*python, str(REPO / "runner" / "swift_entry.py"), "sft"]
    two = asyncio.Semaphore(2)  # a busy 2-core machine: four at once ran past the timeout

    async def layout(name: str, extra: list[str]) -> int:
        async with two:
            return await run(
                [*entry, *sft_args(tiny_llm, tmp_path / name), *extra], tmp_path / f"{name}.log", ENV.get(name)
            )

    codes = await asyncio.gather(*(layout(name, extra) for name, extra in LAYOUTS.items()))
    assert codes == [0] * len(LAYOUTS), [(tmp_path / f"{n}.log").read_text()[-2000:] for n in LAYOUTS]
    seed, padded, packed, tokens = (losses(tmp_path / name) for name in LAYOUTS)
    assert len(seed) == 4 and packed == pytest.approx(seed, rel=1e-5)  # 7 digits alike here
    assert padded == pytest.approx(seed, rel=1e-5)
    assert tokens == pytest.approx(seed, rel=1e-5)  # the same loss over the same tokens, each step
    assert "padding-free batches on sdpa" in (tmp_path / "padding-free.log").read_text()
    log = (tmp_path / "tokens.log").read_text()
    assert "each step's 16 samples, in order, in micro-batches of at most 600 tokens" in log
    assert "in 4 micro-batches; its loss over its tokens by the step's num_items_in_batch" in log  # per step here
    assert "not applied" not in log

    refused = await run(
        [swift, "sft", *sft_args(tiny_llm, tmp_path / "wrapper"), *LAYOUTS["padding-free"]], tmp_path / "wrapper.log"
    )  # swift's own check, through its wrapper
    assert refused != 0 and "requires a flash attention implementation" in (tmp_path / "wrapper.log").read_text()


async def test_an_export_writes_its_shards_together_and_they_are_what_swift_export_writes(
    tmp_path: Path, tiny_llm: dict[str, Any]
) -> None:
    swift = default_swift_bin()
    python = interpreter_of(Path(swift))
    assert python is not None
    train = [*sft_args(tiny_llm, tmp_path / "out"), "--max_steps", "1"]
    assert await run([*python, str(REPO / "runner" / "swift_entry.py"), "sft", *train], tmp_path / "sft.log") == 0
    checkpoint = str(next((tmp_path / "out").glob("*/checkpoint-1")))
    merged = {}
    for name, start in (("entry", [*python, str(REPO / "runner" / "swift_entry.py")]), ("swift", [swift])):
        merged[name] = tmp_path / name
        argv = [
            *start,
            "export",
            "--adapters",
            checkpoint,
            "--merge_lora",
            "true",
            "--output_dir",
            str(merged[name]),
            "--max_shard_size",
            "200KB",
        ]
        assert await run(argv, tmp_path / f"{name}.log") == 0, (tmp_path / f"{name}.log").read_text()[-2000:]
    shards = sorted(p.name for p in merged["swift"].glob("*.safetensors"))
    assert len(shards) >= 3 and sorted(p.name for p in merged["entry"].glob("*.safetensors")) == shards
    for shard in [*shards, "model.safetensors.index.json"]:
        assert (merged["entry"] / shard).read_bytes() == (merged["swift"] / shard).read_bytes(), shard
    assert f"[trainbot] {len(shards)} shard(s)" in (tmp_path / "entry.log").read_text()
    assert "[trainbot]" not in (tmp_path / "swift.log").read_text()


def test_a_shard_is_byte_for_byte_what_safetensors_writes(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from runner.safetensors_writer import write_safetensors

    tensors = {
        "b": torch.randn(3).to(torch.bfloat16),
        "a": torch.randn(2, 3),
        "c": torch.arange(4),
        "d": torch.tensor([True, False]),
        "e": torch.randn(5).half(),
        "scalar": torch.tensor(1.5),
        "empty": torch.zeros(2, 0, dtype=torch.uint8),
        "é": torch.ones(3, dtype=torch.bfloat16),
    }
    for metadata in ({"format": "pt"}, None, {}):
        save_file(tensors, tmp_path / "theirs.safetensors", metadata=metadata)
        write_safetensors(tensors, str(tmp_path / "ours.safetensors"), metadata)
        assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path / "theirs.safetensors").read_bytes()
