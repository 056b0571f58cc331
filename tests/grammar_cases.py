"""The `/train` grammar tests' common ground: the configuration they parse under, and every accepted command."""

from __future__ import annotations

from pathlib import Path

from bot.chat.grammar import (
    AddNote,
    Command,
    CreateJob,
    Help,
    JobCommand,
    ListJobs,
    Rejection,
    ShowGpus,
    ShowStatus,
    parse,
)
from storage.models import Kind

BASE = Path("/srv/trainbot")
ROOT = Path("output")  # relative: the output root is /srv/trainbot/output
OUT = BASE / "output"
# (output_root, base_dir) pairs the properties run under: inside base_dir, elsewhere, with a space, above it.
CONFIGS = [
    (ROOT, BASE),
    (Path("/data/runs"), BASE),
    (Path("/srv/my runs"), Path("/srv/my runs/bot")),
    (Path("/"), Path("/opt/tb")),
]


MODELS, DATA = Path("/models"), Path("/data/sets")  # the folders a `model=` / `dataset=` path may lie in


def p(text: str, output_root: Path = ROOT, base_dir: Path = BASE) -> Command | Rejection:
    return parse(text, output_root=output_root, base_dir=base_dir, model_roots=(MODELS,), data_roots=(DATA,))


def llm(*gpus: str, out: str = "x", dry_run: bool = False, profile: str = "fast") -> CreateJob:
    return CreateJob(Kind.LLM, gpus, OUT / out, {}, dry_run, profile)


def vlm(overrides: dict[str, str], *gpus: str, out: str = "x", dry_run: bool = False) -> CreateJob:
    return CreateJob(Kind.VLM, gpus or ("0",), OUT / out, overrides, dry_run, "fast")


ACCEPTED: list[tuple[str, Command]] = [
    ("", Help(None)),
    ("   ", Help(None)),
    ("llm gpu=0 out=output/x", llm("0")),
    ("llm gpu=0,1 out=output/x", llm("0", "1")),
    ("llm gpu=3,1 out=output/x", llm("3", "1")),  # the user's order is CUDA_VISIBLE_DEVICES' order
    ("llm gpu=cpu out=output/x", llm("cpu")),
    ("llm gpu=CPU out=output/x", llm("cpu")),
    ("llm gpu=007 out=output/x", llm("7")),
    ('llm gpu="0, 1" out=output/x', llm("0", "1")),
    ("llm gpu=0 out=output/x --dry-run", llm("0", dry_run=True)),
    ("llm gpu=0 out=output/x --DRY-RUN", llm("0", dry_run=True)),
    ("llm gpu=0 out=output/x --hold", CreateJob(Kind.LLM, ("0",), OUT / "x", {}, hold=True)),
    ("vlm --hold gpu=0 out=output/x epochs=1", CreateJob(Kind.VLM, ("0",), OUT / "x", {"epochs": "1"}, hold=True)),
    ("llm gpu=0 out=output/x dry_run=true", llm("0", dry_run=True)),
    ("llm gpu=0 out=output/x dry_run=false", llm("0")),
    ("llm gpu=0 out=output/x profile=exact", llm("0", profile="exact")),
    ("llm gpu=0 out=output/x profile=FAST", llm("0")),
    ("llm gpu_id=0 output_dir=output/x", llm("0")),  # the seed's names
    ("LLM GPU=0 Out=output/x", llm("0")),
    ("llm --gpu=0 --out=output/x", llm("0")),
    ("llm gpu=0 out=/srv/trainbot/output/x", llm("0")),
    ("llm gpu=0 out=output//a/./b/../x/", llm("0", out="a/x")),
    ("llm gpu=0 out=./output/x", llm("0")),
    ('llm gpu=0 out="output/my dir"', llm("0", out="my dir")),
    ("llm gpu=0 out='output/my dir'", llm("0", out="my dir")),
    ("llm gpu=0 out=“output/my dir”", llm("0", out="my dir")),  # Slack's smart quotes
    ("llm gpu=0 out=‘output/my dir’", llm("0", out="my dir")),
    ("llm\u00a0gpu=0\u202fout=output/x", llm("0")),  # non-breaking spaces
    ("llm gpu=0 out=output/x —dry-run", llm("0", dry_run=True)),  # autocorrected `--`
    ("llm gpu＝0，1 out＝output/x", llm("0", "1")),  # full-width signs from a Chinese IME
    ("llm gpu=0 out=output/\u200bx", llm("0")),  # zero-width space
    ("llm gpu=0 out=output/训练-1", llm("0", out="训练-1")),
    ("vlm gpu=0 out=output/x", vlm({})),
    ("vlm gpu=0 out=output/x lr=1e-4", vlm({"learning_rate": "0.0001"})),
    ("vlm gpu=0 out=output/x learning_rate=0.0002", vlm({"learning_rate": "0.0002"})),
    ("vlm gpu=0 out=output/x LR=2E-5", vlm({"learning_rate": "2e-05"})),
    ("vlm gpu=0 out=output/x epochs=2", vlm({"epochs": "2"})),
    ("vlm gpu=0 out=output/x epochs=0.5", vlm({"epochs": "0.5"})),
    ("vlm gpu=0 out=output/x epochs=3.0", vlm({"epochs": "3"})),
    (
        "vlm gpu=0 out=output/x model=Qwen/Qwen2.5-VL-7B-Instruct",
        vlm({"model": "Qwen/Qwen2.5-VL-7B-Instruct"}),
    ),
    ("vlm gpu=0 out=output/x model=/models/qwen-vl", vlm({"model": "/models/qwen-vl"})),
    (
        "vlm gpu=0 out=output/x dataset=AI-ModelScope/LaTeX_OCR#500",
        vlm({"dataset": "AI-ModelScope/LaTeX_OCR#500"}),
    ),
    ("vlm gpu=0 out=output/x dataset=a/b#500,c/d:sub", vlm({"dataset": "a/b#500,c/d:sub"})),
    ("vlm gpu=0 out=output/x dataset=/data/sets/ocr.jsonl#20", vlm({"dataset": "/data/sets/ocr.jsonl#20"})),
    ("vlm gpu=0 out=output/x model=/models/a/../b", vlm({"model": "/models/b"})),
    ('vlm gpu=0 out=output/x dataset="a/b, c/d"', vlm({"dataset": "a/b,c/d"})),
    (
        "vlm gpu=0 out=output/x lora_rank=16 lora_alpha=64 max_length=131072 batch_size=2 max_pixels=1003520",
        vlm(
            {
                "lora_rank": "16",
                "lora_alpha": "64",
                "max_length": "131072",
                "batch_size": "2",
                "max_pixels": "1003520",
            }
        ),
    ),
    ("vlm gpu=0 out=output/x lora-rank=08", vlm({"lora_rank": "8"})),
    ("vlm gpu=0,1 out=output/x --dry-run epochs=1", vlm({"epochs": "1"}, "0", "1", dry_run=True)),
    ("start k3x9q", JobCommand("start", "k3x9q")),
    ("stop k3x9q", JobCommand("stop", "k3x9q")),
    ("export k3x9q", JobCommand("export", "k3x9q")),
    ("status k3x9q", JobCommand("status", "k3x9q")),
    ("show k3x9q", JobCommand("show", "k3x9q")),
    ("delete k3x9q", JobCommand("delete", "k3x9q")),
    ("logs k3x9q", JobCommand("logs", "k3x9q")),
    ("STOP K3X9Q", JobCommand("stop", "k3x9q")),
    ("stop `k3x9q`", JobCommand("stop", "k3x9q")),
    ("show abcde", JobCommand("show", "abcde")),
    ("logs k3x9q lines=200", JobCommand("logs", "k3x9q", lines=200)),
    ("logs k3x9q 50", JobCommand("logs", "k3x9q", lines=50)),
    ("logs k3x9q full", JobCommand("logs", "k3x9q", full=True)),
    ("logs k3x9q FULL", JobCommand("logs", "k3x9q", full=True)),
    ("status", ShowStatus()),
    ("list", ListJobs()),
    ("list all", ListJobs()),
    ("list llm", ListJobs(Kind.LLM)),
    ("list VLM", ListJobs(Kind.VLM)),
    ("list state=running", ListJobs(None, "running")),
    ("list vlm state=active", ListJobs(Kind.VLM, "active")),
    ("list failed", ListJobs(None, "failed")),
    ("list state=succeeded llm", ListJobs(Kind.LLM, "succeeded")),
    ("gpus", ShowGpus()),
    ("GPUS", ShowGpus()),
    ("help", Help(None)),
    ("help vlm", Help("vlm")),
    ("help LOGS", Help("logs")),
    ("vlm --help", Help("vlm")),
    ("llm help", Help("llm")),
    ("logs -h", Help("logs")),
    ('llm gpu=0 out=output/x name="lr sweep 3"', CreateJob(Kind.LLM, ("0",), OUT / "x", {}, name="lr sweep 3")),
    ("llm gpu=0 out=output/x NAME=训练-一", CreateJob(Kind.LLM, ("0",), OUT / "x", {}, name="训练-一")),
    (
        "vlm gpu=0 out=output/x name=<b>x</b> epochs=1",
        CreateJob(Kind.VLM, ("0",), OUT / "x", {"epochs": "1"}, name="<b>x</b>"),
    ),
    ("note k3x9q don't; lr 1e-4 | too high  ", AddNote("k3x9q", "don't; lr 1e-4 | too high")),  # free text as typed
    ("NOTE `K3X9Q` “quoted”", AddNote("k3x9q", "“quoted”")),
    ("note help", Help("note")),
    ("status lr-sweep", ShowStatus("lr-sweep")),
    ('status "lr sweep 3"', ShowStatus("lr sweep 3")),
    ("list name=Sweep", ListJobs(None, None, "Sweep")),
    ("list vlm name='a b' state=failed", ListJobs(Kind.VLM, "failed", "a b")),
]
