"""The `/train` language: every rejection, its words, and the example that would be accepted instead."""

from __future__ import annotations

import pytest

from bot.chat.grammar import Rejection
from tests.grammar_cases import p


def rejected(text: str, *needles: str) -> Rejection:
    """Asserts `text` is rejected with a message naming each needle, and an example that parses."""
    result = p(text)
    assert isinstance(result, Rejection), f"{text!r} was accepted as {result!r}"
    for needle in needles:
        assert needle.lower() in result.message.lower(), f"{needle!r} not in {result.message!r}"
    assert result.example, result
    assert not isinstance(p(result.example), Rejection), (result.example, p(result.example))
    return result


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
