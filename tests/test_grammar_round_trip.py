"""The `/train` grammar's round trips: a command's canonical text parses back to the same command."""

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
    parse,
)
from storage.jobs import ID_ALPHABET, ID_LENGTH
from storage.models import Kind
from tests.grammar_cases import ACCEPTED, BASE, CONFIGS, p

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
