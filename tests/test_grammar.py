"""The `/train` language: every command, every rejection, and properties over hostile and random input."""

from __future__ import annotations

import posixpath
import re
import shlex
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.chat.commands import norm
from bot.chat.grammar import (
    COMMANDS,
    JOB_ACTIONS,
    LIST_STATES,
    AddNote,
    Command,
    CreateJob,
    Help,
    JobCommand,
    ListJobs,
    Rejection,
    ShowGpus,
    ShowStatus,
    TryJob,
    help_text,
    normalise,
    out_example,
    parse,
)
from bot.chat.help_text import VLM_KEYS
from runner.config import load_config
from storage.jobs import ID_ALPHABET, ID_LENGTH
from storage.models import JobState, Kind

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


def rejected(text: str, *needles: str) -> Rejection:
    """Asserts `text` is rejected with a message naming each needle, and an example that parses."""
    result = p(text)
    assert isinstance(result, Rejection), f"{text!r} was accepted as {result!r}"
    for needle in needles:
        assert needle.lower() in result.message.lower(), f"{needle!r} not in {result.message!r}"
    assert result.example, result
    assert not isinstance(p(result.example), Rejection), (result.example, p(result.example))
    return result


# ---- accepted commands -------------------------------------------------------------------------------------


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


@pytest.mark.parametrize(("text", "expected"), ACCEPTED, ids=[t for t, _ in ACCEPTED])
def test_accepted(text: str, expected: Command) -> None:
    assert p(text) == expected


@pytest.mark.parametrize("state", [*(s.value for s in JobState), "active"])
def test_list_every_state(state: str) -> None:
    assert p(f"list state={state}") == ListJobs(None, state)


@pytest.mark.parametrize("action", JOB_ACTIONS)
def test_every_job_action(action: str) -> None:
    assert p(f"{action} k3x9q") == JobCommand(action, "k3x9q")  # type: ignore[arg-type]


def test_sixteen_gpus_is_the_most() -> None:
    assert p(f"llm gpu={','.join(map(str, range(16)))} out=output/x") == llm(*map(str, range(16)))


def test_out_elsewhere_and_absolute() -> None:
    assert p("llm gpu=0 out=/data/runs/a", Path("/data/runs"), BASE) == CreateJob(
        Kind.LLM, ("0",), Path("/data/runs/a"), {}, False, "fast"
    )
    assert p("llm gpu=0 out=../runs/a", Path("/data/runs"), Path("/data/bot")) == CreateJob(
        Kind.LLM, ("0",), Path("/data/runs/a"), {}, False, "fast"
    )


def test_out_example_follows_the_configuration() -> None:
    assert out_example(ROOT, BASE) == "output/my-run"
    assert out_example(Path("/data/runs"), BASE) == "/data/runs/my-run"
    assert out_example(Path("/srv/trainbot/runs"), BASE) == "runs/my-run"
    rejection = p("llm gpu=0 out=../x", Path("/data/runs"), BASE)
    assert isinstance(rejection, Rejection) and "`out=/data/runs/my-run`" in rejection.message


def test_model_and_dataset_paths_are_judged_by_where_they_lead(tmp_path: Path) -> None:
    models, data = tmp_path / "models", tmp_path / "data"
    (models / "qwen").mkdir(parents=True)
    data.mkdir()
    (data / "ocr.jsonl").write_text("{}\n")
    (models / "escape").symlink_to("/etc")
    (tmp_path / "Qwen").symlink_to("/etc")  # a hub-id-shaped name that swift would read as a local path

    def run(text: str, roots: tuple[Path, ...] = (Path("models"),)) -> Command | Rejection:
        config = load_config(
            base_dir=tmp_path, overrides={"paths.model_roots": [str(r) for r in roots], "paths.data_roots": ["data"]}
        )
        return parse(
            text,
            output_root=Path("output"),
            base_dir=tmp_path,
            model_roots=config.model_roots,
            data_roots=config.data_roots,
        )

    ok = run("vlm gpu=0 out=output/x model=models/qwen dataset=data/ocr.jsonl#50")
    assert isinstance(ok, CreateJob)
    assert ok.overrides == {"model": str(models / "qwen"), "dataset": f"{data}/ocr.jsonl#50"}
    for text in ("vlm gpu=0 out=output/x model=models/escape", "vlm gpu=0 out=output/x model=Qwen/passwd"):
        refused = run(text)
        assert isinstance(refused, Rejection) and "which leads to `/etc" in refused.message, text
    none = run("vlm gpu=0 out=output/x model=models/qwen", roots=())
    assert isinstance(none, Rejection) and "`[paths] model_roots` is empty" in none.message


def test_symlinks_are_not_resolved(tmp_path: Path) -> None:
    """The grammar does text arithmetic only: a symlink inside the root is the runner's business."""
    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "link").symlink_to("/")
    result = p("llm gpu=0 out=output/link/etc", Path("output"), tmp_path)
    assert isinstance(result, CreateJob) and result.output_dir == tmp_path / "output/link/etc"


# ---- rejections --------------------------------------------------------------------------------------------

REJECTED: list[tuple[str, tuple[str, ...]]] = [
    # LLM: the recipe is fixed
    ("llm gpu=0 out=output/x lr=1e-5", ("`lr`", "recipe is fixed", "`gpu=`", "`out=`")),
    ("llm gpu=0 out=output/x epochs=3", ("`epochs`", "recipe is fixed")),
    ("llm gpu=0 out=output/x model=foo", ("`model`", "recipe is fixed")),
    ("llm gpu=0 out=output/x gpuu=1", ("`gpuu`", "did you mean `gpu`")),
    ("llm gpu=0 out=output/x profile=turbo", ("`profile=turbo`", "`fast`", "`exact`")),
    # VLM: only some keys
    (
        "vlm gpu=0 out=output/x freeze_vit=false",
        ("`freeze_vit`", "may not be overridden", "`lora_rank`", "`learning_rate`", "`max_pixels`"),
    ),
    ("vlm gpu=0 out=output/x deepspeed=zero3", ("`deepspeed`", "may not be overridden")),
    ("vlm gpu=0 out=output/x lora_rnak=8", ("`lora_rnak`", "did you mean `lora_rank`")),
    ("vlm gpu=0 out=output/x epochs=0", ("`epochs=0`", "above 0")),
    ("vlm gpu=0 out=output/x epochs=-1", ("`epochs=-1`", "above 0")),
    ("vlm gpu=0 out=output/x epochs=two", ("`epochs=two`", "number")),
    ("vlm gpu=0 out=output/x epochs=nan", ("`epochs=nan`", "number")),
    ("vlm gpu=0 out=output/x lr=inf", ("`lr=inf`", "number")),
    ("vlm gpu=0 out=output/x lr=1e999", ("`lr=1e999`", "number")),
    ("vlm gpu=0 out=output/x lr=0", ("`lr=0`", "above 0")),
    ("vlm gpu=0 out=output/x lr=5", ("`lr=5`", "at most 1")),
    ("vlm gpu=0 out=output/x lr=1_0e-4", ("`lr=1_0e-4`", "number")),
    ("vlm gpu=0 out=output/x lora_rank=0", ("`lora_rank=0`", "whole number")),
    ("vlm gpu=0 out=output/x lora_rank=8.5", ("`lora_rank=8.5`", "whole number")),
    ("vlm gpu=0 out=output/x lora_rank=1_000", ("`lora_rank=1_000`", "whole number")),
    ("vlm gpu=0 out=output/x lora_alpha=²", ("`lora_alpha=²`", "whole number")),
    ("vlm gpu=0 out=output/x max_length=131073", ("`max_length=131073`", "131072")),
    ("vlm gpu=0 out=output/x batch_size=-2", ("`batch_size=-2`", "whole number")),
    ("vlm gpu=0 out=output/x max_pixels=9" + "9" * 30, ("`max_pixels=", "whole number")),
    ("vlm gpu=0 out=output/x model=-rf", ("`-rf`", "leading `-`")),
    ("vlm gpu=0 out=output/x dataset=a,,b", ("`dataset=a,,b`", "(empty)")),
    ("vlm gpu=0 out=output/x dataset=--help", ("`--help`", "dataset")),
    ('vlm gpu=0 out=output/x model="a b"', ("`model=a b`", "no spaces")),
    # shell signs are not part of the language
    ("llm gpu=0 out=output/x; rm -rf /", ("`;` is not part of the `/train` language",)),
    ("llm gpu=0 out=output/x && rm -rf /", ("`&&` is not part",)),
    ("llm gpu=0 out=output/x | tee", ("`|` is not part",)),
    ("llm gpu=0 out=output/`id`", ("Backticks are not part",)),
    ("llm gpu=0 out=output/$(id)", ("`$(` is not part",)),
    # folder names are limited in bytes, not characters
    ("llm gpu=0 out=output/" + "é" * 200, ("400 bytes", "at most 255 bytes")),
    # a model or dataset is a hub id, or a path inside [paths] model_roots / data_roots
    ("vlm gpu=0 out=output/x dataset=/etc/passwd", ("`/etc/passwd`", "not a hub id", "`[paths] data_roots`")),
    ("vlm gpu=0 out=output/x model=/etc", ("`/etc`", "not a hub id", "`/models`")),
    ("vlm gpu=0 out=output/x model=/models/../etc", ("`/models/../etc`", "outside the allowed folders")),
    ("vlm gpu=0 out=output/x dataset=a/b,../../etc/passwd#5", ("`../../etc/passwd#5`", "not a hub id")),
    ("vlm gpu=0 out=output/x model=~/models", ("`~/models`", "not a hub id")),
    ("vlm gpu=0 out=output/x model=Qwen/../../etc", ("not a hub id",)),
    ("vlm gpu=0 out=output/x model=Qwen/Qwen#5", ("not a hub id",)),
    ("vlm gpu=0 out=output/x dataset=passwd", ("`passwd`", "not a hub id")),
    # GPUs
    ("llm gpu=a out=output/x", ("`gpu=a` is not a GPU list", "`gpu=0`", "`gpu=0,1`", "`gpu=cpu`")),
    ("llm gpu=0,,1 out=output/x", ("`gpu=0,,1`", "empty entry")),
    ("llm gpu=0, out=output/x", ("`gpu=0,`", "empty entry")),
    ("llm gpu=0,0 out=output/x", ("`gpu=0,0`", "twice")),
    ("llm gpu=1,01 out=output/x", ("`gpu=1,01`", "twice")),
    ("llm gpu=-1 out=output/x", ("`gpu=-1`", "negative")),
    ("llm gpu=cpu,0 out=output/x", ("`gpu=cpu,0`", "mixes `cpu`")),
    ("llm gpu=cpu,cpu out=output/x", ("`gpu=cpu,cpu`", "mixes `cpu`")),
    ("llm gpu=" + ",".join(map(str, range(17))) + " out=output/x", ("17 GPUs", "at most 16")),
    ("llm gpu=256 out=output/x", ("`gpu=256`", "above 255")),
    ("llm gpu=1.5 out=output/x", ("`gpu=1.5`", "not a GPU list")),
    ("llm gpu=٣ out=output/x", ("not a GPU list",)),  # an Arabic-Indic digit
    ("llm gpu=cuda:0 out=output/x", ("`gpu=cuda:0`", "not a GPU list")),
    ("llm gpu= out=output/x", ("`gpu=`", "no value", "`gpu=0`")),
    ("llm out=output/x", ("needs `gpu=`", "`gpu=0`")),
    ("llm gpu 0 out=output/x", ("`gpu` needs a value", "`gpu=<value>`")),
    # out=
    ("llm gpu=0", ("needs `out=`", "`out=output/my-run`")),
    ("llm gpu=0 out=", ("`out=`", "no value", "`out=output/my-run`")),
    ('llm gpu=0 out=" "', ("`out= ` is empty", "`out=output/my-run`")),
    (
        "llm gpu=0 out=../x",
        (
            "`out=../x`",
            "would write to `/srv/x`",
            "outside the output folder",
            "`/srv/trainbot/output`",
            "`out=output/my-run`",
        ),
    ),
    ("llm gpu=0 out=output/../../x", ("would write to `/srv/x`",)),
    ("llm gpu=0 out=/etc/cron.d", ("would write to `/etc/cron.d`",)),
    ("llm gpu=0 out=x", ("would write to `/srv/trainbot/x`",)),
    ("llm gpu=0 out=output", ("`out=output` is the output folder itself",)),
    ("llm gpu=0 out=output/.", ("is the output folder itself",)),
    ("llm gpu=0 out=output/a/..", ("is the output folder itself",)),
    (
        "llm gpu=0 out=/srv/trainbot/outputs/x",
        ("would write to `/srv/trainbot/outputs/x`",),
    ),  # prefix, not inside
    ("llm gpu=0 out=output/a\x00b", ("control character",)),
    ('llm gpu=0 "out=output/a\nb"', ("control character",)),
    ('llm gpu=0 "out=output/a\tb"', ("control character",)),
    ("llm gpu=0 out=output/" + "a" * 300, ("characters long", "255")),
    # keys and flags
    ("llm gpu=0 gpu=1 out=output/x", ("`gpu` is given twice", "`gpu=0`", "`gpu=1`")),
    ("llm gpu=0 gpu_id=1 out=output/x", ("`gpu` is given twice", "`gpu_id=1`")),
    ("llm gpu=0 out=output/x out=output/y", ("`out` is given twice",)),
    ("vlm gpu=0 out=output/x lr=1e-4 learning_rate=1e-4", ("`learning_rate` is given twice",)),
    ("llm gpu=0 out=output/x dry-run", ("`dry-run`", "`--dry-run`")),
    ("llm gpu=0 out=output/x --dryrun", ("`--dryrun`", "`--dry-run`")),
    ("llm gpu=0 out=output/x dry_run=maybe", ("`dry_run=maybe`", "`true`", "`false`")),
    ("llm gpu=0 out=output/x fast", ("`fast` needs a value", "`profile=`")),
    ("llm gpu=0 out='output/x", ("quote is not closed",)),
    ('vlm gpu=0 out=output/x model="Qwen', ("quote is not closed",)),
    ("gpu=0 out=output/x", ("which recipe", "`llm`", "`vlm`")),
    # job commands
    ("stop", ("`stop` needs a job id", "`/train stop k3x9q`")),
    ("logs", ("`logs` needs a job id",)),
    ("stop k3x9q!", ("`k3x9q!` is not a job id", "`k3x9q`")),
    ("stop k3x", ("`k3x` is not a job id", "ids are 5 letters and digits")),
    ("stop k3x9qk", ("`k3x9qk` is not a job id",)),  # ids are made with exactly 5 characters
    ("stop abcdefghjkmnp", ("is not a job id",)),
    ("stop k3x0q", ("is not a job id", "never contain 0, 1, i, l or o")),
    ("show k3x9q extra", ("`show` takes only a job id", "`extra`")),
    ("logs k3x9q lines=0", ("`lines=0`", "`lines=N`")),
    ("logs k3x9q lines=many", ("`lines=many`",)),
    ("logs k3x9q lines=99999999999", ("`lines=99999999999`",)),
    ("logs k3x9q lines=5 lines=6", ("`lines=` is given twice",)),
    ("logs k3x9q full lines=5", ("`full`", "`lines=`")),
    ("logs k3x9q tail", ("`tail`", "`lines=N`", "`full`")),
    # list, gpus, help, unknown
    ("list foo", ("`foo` is not a job kind or state", "`running`", "`active`", "`list name=foo`")),
    ("list name=a name=b", ("one `name=`",)),
    ("list name=' '", ("`name=` needs the text",)),
    ('llm gpu=0 out=output/x name=" "', ("the name is empty",)),
    ("llm gpu=0 out=output/x name=" + "n" * 101, ("the name is 101 characters long", "at most 100")),
    ("note k3x9q", ("needs the note's text",)),
    ("note lr-sweep too high", ("`lr-sweep` is not a job id",)),
    ("list state=done", ("`state=done`", "`succeeded`")),
    ("list kind=running", ("`kind=running`",)),
    ("list llm vlm", ("one kind", "`vlm`")),
    ("list running failed", ("one state", "`failed`")),
    ("gpus 0", ("`gpus` takes nothing", "`0`")),
    ("help foo", ("no help on `foo`", "`vlm`")),
    ("help lgos", ("did you mean `logs`",)),
    ("help llm vlm", ("no help on `llm vlm`",)),
    ("trian", ("`trian` is not a `/train` command", "did you mean `llm` or `vlm`", "`list`")),
    ("stpo k3x9q", ("`stpo`", "did you mean `stop`")),
    ("cancel k3x9q", ("`cancel`", "did you mean `stop`")),
    ("rm k3x9q", ("did you mean `delete`",)),
    ("lsit", ("did you mean `list`",)),
    ("x" * 5000, ("5000 characters", "4000")),
]


@pytest.mark.parametrize(("text", "needles"), REJECTED, ids=[t[:60] for t, _ in REJECTED])
def test_rejected(text: str, needles: tuple[str, ...]) -> None:
    rejected(text, *needles)


def test_the_example_is_the_users_command_fixed() -> None:
    assert rejected("vlm gpu=a out=output/x lr=1e-4").example == "vlm gpu=0 out=output/x lr=1e-4"
    assert rejected("llm gpu=0 out=output/x lr=1e-5").example == "llm gpu=0 out=output/x"
    assert rejected("llm out=output/x").example == "llm out=output/x gpu=0"
    assert rejected("llm gpu=0 out=../x --dry-run").example == "llm gpu=0 out=output/my-run --dry-run"
    assert rejected("llm gpu=0 out=output/x dry-run").example == "llm gpu=0 out=output/x --dry-run"
    assert rejected("stop").example == "list"
    # when the fix alone is not enough, a stock command of the same kind
    assert rejected("llm gpu=a out=nowhere").example == "llm gpu=0 out=output/my-run"


def test_rejection_text_offers_the_example() -> None:
    rejection = rejected("llm gpu=a out=output/x")
    assert rejection.text() == rejection.message + "\nTry: `/train llm gpu=0 out=output/x`"
    assert Rejection("no").text() == "no"


def test_hostile_text_is_shown_safely() -> None:
    rejection = rejected("llm `a`\x07 gpu=0 out=output/x")
    assert "`'a'\\x07`" in rejection.message  # backticks can't end the code span, controls are escaped
    long = rejected("vlm gpu=0 out=output/x " + "k" * 3000 + "=1")
    assert len(long.message) < 1000


# ---- help --------------------------------------------------------------------------------------------------


def test_help_covers_every_command() -> None:
    overview = help_text(None)
    for command in COMMANDS:
        assert f"`/train {command}" in overview
        assert help_text(command).startswith(f"*`/train {command}")
    for key in VLM_KEYS:
        assert f"`{key}`" in help_text("vlm")
    assert help_text("nonsense") == overview
    assert "`out=/data/runs/my-run`" in help_text("llm", out_example="/data/runs/my-run")


@pytest.mark.parametrize("topic", [None, *COMMANDS])
def test_every_example_in_help_parses(topic: str | None) -> None:
    examples = re.findall(r"`/train ([^`<\[]+)`", help_text(topic))
    assert examples or topic in (None,)
    for example in examples:
        assert not isinstance(p(example), Rejection), example


# ---- properties --------------------------------------------------------------------------------------------

HOSTILE = st.sampled_from(
    [
        "llm",
        "vlm",
        "logs",
        "list",
        "help",
        "status",
        "gpu=",
        "out=",
        "=",
        "==",
        "gpu=0",
        "gpu=cpu",
        "out=output/x",
        "lr=",
        "--dry-run",
        "--hold",
        "full",
        "lines=",
        "k3x9q",
        '"',
        "'",
        "“",
        "”",
        "‘",
        "’",
        "\\",
        "\x00",
        "\n",
        "\r\n",
        "\t",
        "\u00a0",
        "\u3000",
        "\u200b",
        "\ufeff",
        "—",
        "..",
        "/",
        "//",
        "~",
        "$HOME",
        "`",
        "*",
        "<!channel>",
        "&amp;",
        "${x}",
        ";",
        "|",
        "&&",
        "#",
        "é",
        "训练",
        "🚀",
        "\U0010ffff",
        "\ud800",
        "-" * 300,
        "9" * 500,
        "a" * 4001,
        " ",
    ]
)
TEXTS = st.one_of(
    st.text(max_size=300),
    st.lists(HOSTILE | st.text(max_size=20), max_size=25).map(" ".join),
    st.lists(HOSTILE, max_size=25).map("".join),
)


def check_result(result: Command | Rejection, output_root: Path, base_dir: Path) -> None:
    if isinstance(result, Rejection):
        assert result.message.strip()
        assert "\n" not in result.message
        assert result.example is not None
        assert not isinstance(parse(result.example, output_root=output_root, base_dir=base_dir), Rejection)
    elif isinstance(result, CreateJob):
        root = Path(posixpath.normpath(base_dir / output_root))
        assert result.output_dir.is_relative_to(root) and result.output_dir != root
        assert ".." not in result.output_dir.parts
        assert str(result.output_dir) == posixpath.normpath(result.output_dir)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXTS, config=st.sampled_from(CONFIGS))
def test_any_text_parses_or_is_rejected_helpfully(text: str, config: tuple[Path, Path]) -> None:
    output_root, base_dir = config
    check_result(parse(text, output_root=output_root, base_dir=base_dir), output_root, base_dir)


SEGMENTS = st.lists(
    st.sampled_from(["a", "b", ".", "..", "", "output", "runs", "my run", "x.y", "训练"]),
    min_size=1,
    max_size=8,
).map("/".join)


@settings(max_examples=300, deadline=None)
@given(path=SEGMENTS, absolute=st.booleans(), config=st.sampled_from(CONFIGS))
def test_out_is_inside_the_root_or_rejected(path: str, absolute: bool, config: tuple[Path, Path]) -> None:
    output_root, base_dir = config
    value = "/" + path if absolute else path
    result = parse(f"llm gpu=0 out={shlex.quote(value)}", output_root=output_root, base_dir=base_dir)
    check_result(result, output_root, base_dir)
    # POSIX keeps a leading `//` apart; the grammar (rightly) reads it as `/`.
    target = posixpath.normpath(re.sub("/+", "/", posixpath.join(str(base_dir), value.strip())))
    root = posixpath.normpath(posixpath.join(str(base_dir), str(output_root)))
    inside = target.startswith(root.rstrip("/") + "/") and target != root
    assert isinstance(result, CreateJob) == (inside and bool(value.strip()))


@settings(max_examples=200, deadline=None)
@given(text=st.sampled_from([t for t, _ in ACCEPTED if not set(t) & set("'\"“”‘’")]))
def test_smart_quotes_mean_plain_quotes(text: str) -> None:
    words = normalise(text).split()
    curly = " ".join(f"“{w}”" if "=" in w else w for w in words)
    assert p(curly) == p(text)


# Valid commands, already in their normalised form, for the round trip.
NAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}/[A-Za-z0-9][A-Za-z0-9_.-]{0,14}", fullmatch=True)
DATASET = st.from_regex(
    r"[A-Za-z0-9][A-Za-z0-9_.-]{0,9}/[A-Za-z0-9][A-Za-z0-9_.-]{0,9}(:[a-z0-9]{1,5})?(#[0-9]{1,4})?", fullmatch=True
)
FOLDER = st.from_regex(r"[A-Za-z0-9_]([A-Za-z0-9_. -]{0,20}[A-Za-z0-9_])?", fullmatch=True)
GPUS = st.just(("cpu",)) | st.lists(st.integers(0, 255), min_size=1, max_size=16, unique=True).map(
    lambda ids: tuple(map(str, ids))
)


def _number(x: float) -> str:
    return str(int(x)) if x.is_integer() else repr(x)


VLM_VALUES = {
    "model": NAME,
    "dataset": st.lists(DATASET, min_size=1, max_size=4).map(",".join),
    "epochs": st.floats(0.01, 1000).map(_number),
    "learning_rate": st.floats(1e-9, 1).map(_number),
    "lora_rank": st.integers(1, 1024).map(str),
    "lora_alpha": st.integers(1, 4096).map(str),
    "max_length": st.integers(1, 131072).map(str),
    "batch_size": st.integers(1, 1024).map(str),
    "max_pixels": st.integers(1, 100_000_000).map(str),
}


def unparse(command: Command, *, base_dir: Path) -> str:
    """A command's canonical text (after `/train`): the oracle of the round trips, parse(unparse(c)) == c."""
    if isinstance(command, CreateJob):
        out, base = command.output_dir, norm(base_dir)
        words = [
            str(command.kind),
            "gpu=" + ",".join(command.gpus),
            "out=" + str(out.relative_to(base) if out.is_relative_to(base) else out),
        ]
        words += [] if command.profile == "fast" else [f"profile={command.profile}"]
        words += [f"{k}={v}" for k, v in command.overrides.items()] + ["--dry-run"] * command.dry_run
        words += ["--hold"] * command.hold
        words += [] if command.name is None else [f"name={command.name}"]
        return " ".join(shlex.quote(w) for w in words)
    if isinstance(command, JobCommand):
        extra = [f"lines={command.lines}"] * (command.lines is not None) + ["full"] * command.full
        return " ".join([command.action, command.job_id, *extra])
    if isinstance(command, AddNote):
        return f"note {command.job_id} {command.text}"
    if isinstance(command, TryJob):
        options = [f"checkpoint={command.checkpoint}"] * (command.checkpoint is not None)
        options += [f"gpu={','.join(command.gpus)}"] if command.gpus else []
        options += [f"max_tokens={command.max_tokens}"] if command.max_tokens is not None else []
        return " ".join(["try", command.job_id, *options, *([command.question] if command.question else [])])
    if isinstance(command, ListJobs):
        kind = [str(command.kind)] if command.kind else []
        text = [shlex.quote(f"name={command.text}")] if command.text is not None else []
        return " ".join(["list", *kind, *([f"state={command.state}"] if command.state else []), *text])
    if isinstance(command, Help):
        return "help" + (f" {command.topic}" if command.topic else "")
    if isinstance(command, ShowStatus):
        return "status" + (f" {shlex.quote(command.ref)}" if command.ref is not None else "")
    return "gpus"


@st.composite
def commands(draw: st.DrawFn, output_root: Path, base_dir: Path) -> Command:
    root = Path(posixpath.normpath(base_dir / output_root))
    choice = draw(st.sampled_from(["llm", "vlm", "job", "note", "list", "status", "gpus", "help"]))
    if choice in ("llm", "vlm"):
        out = root.joinpath(*draw(st.lists(FOLDER, min_size=1, max_size=4)))
        assume(all(part not in (".", "..") for part in out.parts))
        overrides: dict[str, str] = {}
        if choice == "vlm":
            keys = draw(st.lists(st.sampled_from(list(VLM_VALUES)), unique=True, max_size=len(VLM_VALUES)))
            overrides = {key: draw(VLM_VALUES[key]) for key in keys}
        return CreateJob(
            Kind(choice),
            draw(GPUS),
            out,
            overrides,
            draw(st.booleans()),
            draw(st.sampled_from(["fast", "exact"])),
            False,
            draw(st.none() | NAMES),
        )
    if choice == "note":
        return AddNote(
            draw(st.text(ID_ALPHABET, min_size=ID_LENGTH, max_size=ID_LENGTH)),
            draw(st.text(min_size=1, max_size=40).map(str.strip).filter(bool)),
        )
    if choice == "job":
        action = draw(st.sampled_from(JOB_ACTIONS))
        job_id = draw(st.text(ID_ALPHABET, min_size=ID_LENGTH, max_size=ID_LENGTH))
        if action != "logs":
            return JobCommand(action, job_id)
        full = draw(st.booleans())
        return JobCommand(action, job_id, None if full else draw(st.none() | st.integers(1, 10_000)), full)
    if choice == "list":
        return ListJobs(
            draw(st.sampled_from([None, Kind.LLM, Kind.VLM])),
            draw(st.sampled_from([None, *LIST_STATES])),
            draw(st.none() | NAMES),
        )
    if choice == "help":
        return Help(draw(st.sampled_from([None, *COMMANDS])))
    if choice == "status":
        ref = draw(st.none() | NAMES)
        assume(ref is None or not re.fullmatch(f"[{ID_ALPHABET}]{{{ID_LENGTH}}}", ref.lower()))
        return ShowStatus(ref)
    return ShowGpus()


NAMES = st.from_regex(r"[A-Za-z训é][A-Za-z0-9 训é_.-]{0,20}", fullmatch=True)


@settings(max_examples=400, deadline=None)
@given(data=st.data(), config=st.sampled_from(CONFIGS))
def test_valid_commands_round_trip(data: st.DataObject, config: tuple[Path, Path]) -> None:
    output_root, base_dir = config
    command = data.draw(commands(output_root, base_dir))
    text = unparse(command, base_dir=base_dir)
    assert parse(text, output_root=output_root, base_dir=base_dir) == command, text
    assert unparse(command, base_dir=base_dir) == text


WORDS = st.sampled_from(
    [
        "gpu=0",
        "gpu=1,0",
        "GPU_ID=cpu",
        "out=output/a",
        "output_dir=./output//b/../c",
        "out='output/my run'",
        "lr=1e-4",
        "epochs=2.50",
        "dataset=a/b#5,c",
        "--dry-run",
        "dry_run=no",
        "profile=exact",
        "k3x9q",
        "lines=20",
        "full",
        "llm",
        "vlm",
        "running",
        "state=active",
        "all",
    ]
)
STARTS = st.sampled_from([*COMMANDS, *(text for text, _ in ACCEPTED)])
LIKELY = st.builds(lambda start, words: " ".join([start, *words]), STARTS, st.lists(WORDS, max_size=6))


@pytest.mark.slow  # 300 generated commands
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(text=LIKELY)
def test_parsed_text_round_trips(text: str) -> None:
    result = p(text)
    assume(not isinstance(result, Rejection))
    assert not isinstance(result, Rejection)
    assert p(unparse(result, base_dir=BASE)) == result


@given(text=st.text(max_size=200))
def test_normalise_is_idempotent(text: str) -> None:
    assert normalise(normalise(text)) == normalise(text)
