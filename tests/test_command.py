"""The seed's recipe as argv, for the ms-swift that will run it, checked by swift's own argument parser."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.words.profiles import note_words
from runner.child_env import child_env
from runner.command import build_export, build_sft, flag_name, resolve_recipe
from runner.config import load_config
from runner.recipes import VLM_USER_KEYS
from runner.supervisor import DIRECT_NOTE, DIRECT_RANKS_NOTE, JobRequest, Plan
from runner.swift_entry import NO_CUDNN_ATTENTION
from runner.swift_version import SwiftVersion, detect_version
from storage.models import Kind
from tests.conftest import REPO, VENV_BIN, MakeConfig, OpenRuntime

# The seed's command (seed/000_54d7a71bb71cfccb.txt), word for word, with {output_dir} filled in.
SEED = [
    "swift",
    "sft",
    "--model",
    "Qwen/Qwen2.5-7B-Instruct",
    "--train_type",
    "lora",
    "--dataset",
    "AI-ModelScope/alpaca-gpt4-data-zh#500",
    "AI-ModelScope/alpaca-gpt4-data-en#500",
    "swift/self-cognition#500",
    "--torch_dtype",
    "bfloat16",
    "--num_train_epochs",
    "1",
    "--per_device_train_batch_size",
    "1",
    "--per_device_eval_batch_size",
    "1",
    "--learning_rate",
    "1e-4",
    "--lora_rank",
    "8",
    "--lora_alpha",
    "32",
    "--target_modules",
    "all-linear",
    "--gradient_accumulation_steps",
    "16",
    "--eval_steps",
    "50",
    "--save_steps",
    "50",
    "--save_total_limit",
    "2",
    "--logging_steps",
    "5",
    "--max_length",
    "2048",
    "--output_dir",
    "OUT",
    "--system",
    "You are a helpful assistant.",
    "--warmup_ratio",
    "0.05",
    "--dataloader_num_workers",
    "4",
    "--model_author",
    "swift",
    "--model_name",
    "swift-robot",
]


def seed_argv(out: Path, *, train_flag: str) -> list[str]:
    return [str(out) if w == "OUT" else ("--" + train_flag if w == "--train_type" else w) for w in SEED]


def test_llm_argv_is_the_seeds_command_with_only_the_4x_flag_renamed(tmp_path: Path) -> None:
    config = load_config(base_dir=tmp_path)
    out = tmp_path / "output" / "x"
    cmd = build_sft(resolve_recipe(Kind.LLM, config), output_dir=out, config=config, version=SwiftVersion(4, 6))
    assert list(cmd.argv) == seed_argv(out, train_flag="tuner_type")
    assert cmd.env == {}
    cmd3 = build_sft(resolve_recipe(Kind.LLM, config), output_dir=out, config=config, version=SwiftVersion(3, 12))
    assert list(cmd3.argv) == seed_argv(out, train_flag="train_type")


def test_flag_names_follow_the_version() -> None:
    assert flag_name("train_type", SwiftVersion(3, 9)) == "train_type"
    assert flag_name("train_type", SwiftVersion(4, 0)) == "tuner_type"
    assert flag_name("lora_rank", SwiftVersion(4, 6)) == "lora_rank"


@pytest.mark.swift  # needs the installed ms-swift
def test_installed_swift_version_is_found_without_importing_torch() -> None:
    assert "torch" not in sys.modules
    assert detect_version(str(VENV_BIN / "swift")) == SwiftVersion(4, 6, 0)
    assert "torch" not in sys.modules


_PARSE = """
import json, sys
from transformers import HfArgumentParser
from swift.arguments import SftArguments
parser = HfArgumentParser([SftArguments])
ns, remaining = parser.parse_known_args(json.loads(sys.argv[1]))
print(json.dumps({"remaining": remaining, "tuner_type": getattr(ns, "tuner_type", None),
                  "learning_rate": ns.learning_rate, "dataset": ns.dataset, "system": ns.system}))
"""


def swift_parse(argv: list[str]) -> dict[str, object]:
    """Run ms-swift 4.6's own argument classes over argv (no model load: that needs the hub)."""
    out = subprocess.run(
        [str(VENV_BIN / "python"), "-c", _PARSE, json.dumps(argv)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.swift
def test_real_swift_parser_accepts_our_argv_and_rejects_the_seeds_literal_flag(tmp_path: Path) -> None:
    config = load_config(base_dir=tmp_path)
    cmd = build_sft(
        resolve_recipe(Kind.LLM, config),
        output_dir=tmp_path / "o",
        config=config,
        version=detect_version(str(VENV_BIN / "swift")),
    )
    ours = swift_parse(list(cmd.argv[2:]))
    assert ours["remaining"] == []
    assert ours["tuner_type"] == "lora" and ours["learning_rate"] == 1e-4
    assert ours["dataset"] == [
        "AI-ModelScope/alpaca-gpt4-data-zh#500",
        "AI-ModelScope/alpaca-gpt4-data-en#500",
        "swift/self-cognition#500",
    ]
    assert ours["system"] == "You are a helpful assistant."
    literal = swift_parse(seed_argv(tmp_path / "o", train_flag="train_type")[2:])
    assert literal["remaining"] == ["--train_type", "lora"]  # what makes the seed's command fail on 4.x


def test_config_file_changes_fixed_values_in_place(tmp_path: Path) -> None:
    cfg_path = tmp_path / "trainbot.toml"
    cfg_path.write_text("""
[swift]
offline = true
[llm]
model = "/mirror/Qwen2.5-7B-Instruct"
dataset = ["/mirror/zh.jsonl#500", "/mirror/en.jsonl#500", "/mirror/self-cognition#500"]
drop = ["dataloader_num_workers"]
[llm.args]
model_type = "qwen2"
[llm.env]
MODELSCOPE_CACHE = "/cache"
""")
    config = load_config(cfg_path, base_dir=tmp_path)
    cmd = build_sft(
        resolve_recipe(Kind.LLM, config), output_dir=tmp_path / "o", config=config, version=SwiftVersion(4, 6)
    )
    argv = list(cmd.argv)
    assert argv[2:4] == ["--model", "/mirror/Qwen2.5-7B-Instruct"]  # still first, where the seed has it
    assert argv[argv.index("--dataset") + 1 : argv.index("--dataset") + 4] == [
        "/mirror/zh.jsonl#500",
        "/mirror/en.jsonl#500",
        "/mirror/self-cognition#500",
    ]
    assert "--dataloader_num_workers" not in argv
    assert argv[-4:] == ["--model_type", "qwen2", "--check_model", "false"]  # local folder + offline
    assert cmd.env["MODELSCOPE_CACHE"] == "/cache" and cmd.env["HF_HUB_OFFLINE"] == "1"


def test_vlm_recipe_defaults_and_user_overrides(tmp_path: Path) -> None:
    config = load_config(base_dir=tmp_path)
    base = resolve_recipe(Kind.VLM, config)
    assert base.value("model") == "Qwen/Qwen2.5-VL-7B-Instruct" and base.value("freeze_vit") == "true"
    assert dict(base.env)["MAX_PIXELS"] == "1003520"
    custom = resolve_recipe(
        Kind.VLM, config, {"batch_size": "2", "max_pixels": "50176", "dataset": "a#10,b", "epochs": "3"}
    )
    assert custom.value("per_device_train_batch_size") == "2" == custom.value("per_device_eval_batch_size")
    assert custom.value("dataset") == ("a#10", "b") and custom.value("num_train_epochs") == "3"
    assert dict(custom.env)["MAX_PIXELS"] == "50176"
    assert set(VLM_USER_KEYS) == {
        "model",
        "dataset",
        "epochs",
        "learning_rate",
        "lora_rank",
        "lora_alpha",
        "max_length",
        "batch_size",
        "max_pixels",
    }


def test_export_command_merges_into_a_reusable_folder(tmp_path: Path) -> None:
    config = load_config(base_dir=tmp_path)
    cmd = build_export(checkpoint="/o/v0/checkpoint-50", export_dir=Path("/o/v0/checkpoint-50-merged"), config=config)
    assert list(cmd.argv) == [
        "swift",
        "export",
        "--adapters",
        "/o/v0/checkpoint-50",
        "--merge_lora",
        "true",
        "--output_dir",
        "/o/v0/checkpoint-50-merged",
        "--exist_ok",
        "true",
    ]


@pytest.mark.swift  # needs the installed ms-swift
def test_console_dry_run_prints_the_exact_command(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(VENV_BIN / "trainbot"), "console"],
        input="llm gpu=0 out=output/x --dry-run\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=True,
    )
    expected = " ".join(
        f"'{w}'" if " " in w or "#" in w else w for w in seed_argv(tmp_path / "output" / "x", train_flag="tuner_type")
    )
    assert expected in out.stdout
    assert "GPU 0 does not exist on this machine" in out.stdout  # shown anyway, with a warning
    assert not (tmp_path / "output").exists()  # nothing started, nothing written


@pytest.mark.swift  # needs the installed ms-swift
async def test_one_process_jobs_start_swifts_sft_script_directly_and_exact_runs_swift_sft(
    make_config: MakeConfig, open_runtime: OpenRuntime, tmp_path: Path
) -> None:
    config = make_config()
    rt = await open_runtime(config)

    def plan(gpus: tuple[str, ...], profile: str = "fast") -> Plan:
        return rt.supervisor.plan(JobRequest(Kind.LLM, gpus, tmp_path / "o", {}, profile=profile))

    exact, direct = plan(("cpu",), "exact"), plan(("cpu",))
    assert exact.argv[:2] == (config.swift_bin, "sft") and DIRECT_NOTE not in exact.notes
    python = (VENV_BIN / "swift").read_text().splitlines()[0][2:]  # the python in swift's shebang
    entry = (python, str(REPO / "runner" / "swift_entry.py"))
    assert direct.argv[:3] == (*entry, "sft") and DIRECT_NOTE in direct.notes
    assert not [word for word in ("runner/", ".py", "teardown", "interpreter") if word in note_words(DIRECT_NOTE)]
    assert direct.argv[3:] == exact.argv[2:]  # the same flags: only how swift is started differs
    assert "runner/swift_entry.py sft --model" in direct.display

    # several GPUs: one rank a GPU under torch.distributed.run on swift's python, each running the same entry
    ranks = plan(("0", "1"))
    assert ranks.argv[:7] == (python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", entry[1])
    assert ranks.argv[7] == "sft" and DIRECT_RANKS_NOTE in ranks.notes and DIRECT_NOTE not in ranks.notes
    assert plan(("0", "1"), "exact").argv[:2] == (config.swift_bin, "sft")  # exact: `swift sft`'s own torchrun
    # a swift that is no python script keeps its own way
    shim = tmp_path / "swift"
    shim.write_text(f'#!/bin/sh\nexec "{VENV_BIN / "swift"}" "$@"\n')
    shim.chmod(0o755)
    shimmed = await open_runtime(make_config(swift_bin=str(shim)))
    assert shimmed.supervisor.plan(JobRequest(Kind.LLM, ("cpu",), tmp_path / "o", {})).argv[:2] == (str(shim), "sft")


@pytest.mark.swift  # needs torch
def test_the_entry_hands_swift_cudnn_attention_off_when_the_plan_says_so(tmp_path: Path) -> None:
    """What swift's sft script finds when runner/swift_entry.py starts it: a stand-in for that script (first on the
    path) reports PyTorch's attention settings and its arguments."""
    cli = tmp_path / "swift" / "cli"
    cli.mkdir(parents=True)
    for package in (tmp_path / "swift", cli):
        (package / "__init__.py").write_text("")
    (cli / "sft.py").write_text(
        "import sys, torch\nprint('cudnn attention', torch.backends.cuda.cudnn_sdp_enabled(), sys.argv[1:])\n"
    )

    def started(env: dict[str, str]) -> str:
        done = subprocess.run(
            [str(VENV_BIN / "python"), str(REPO / "runner" / "swift_entry.py"), "sft", "--x", "1"],
            env=child_env(None, {"PYTHONPATH": str(tmp_path), **env}),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "cudnn attention False ['--x', '1']" in started({NO_CUDNN_ATTENTION: "1"})
    assert "cudnn attention True ['--x', '1']" in started({})
