"""Every typed fact (failures, queue reasons, profile notes, who stopped a job) is worded by every front end: Slack
mrkdwn, the console's plain text, the web page's HTML, and the API's code + fields + message. Each kind, each of
its choices (booleans, enums, literals), with its text fields hostile and with its optional fields empty."""

from __future__ import annotations

import dataclasses
import enum
import html
import itertools
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.http.api.facts import actor_out, failure_out, reason_out
from bot.words import failures as failure_words
from bot.words.format import HTML, PLAIN, SLACK, Format
from bot.words.profiles import note_words
from bot.words.texts import by_words
from bot.words.waiting import waiting_words
from storage.actors import Actor
from storage.failure_facts import FailureReason, JobFailure, SchedulerEnded, SlurmEnd
from storage.profile_notes import ProfileNote
from storage.waiting import QueueReason

HOSTILE = "<!channel> *b* `x` <script>"
FORMATS = {"plain": PLAIN, "slack": SLACK, "html": HTML}


def _choices(hint: Any) -> list[Any]:
    """The values a field may take that change the words: each of a bool's, an enum's or a Literal's."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if hint is bool:
        return [True, False]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return list(hint)
    if typing.get_origin(hint) is typing.Literal:
        return list(args)
    if typing.get_origin(hint) in (types.UnionType, typing.Union) and len(args) == 1:
        return _choices(args[0])
    return []


def _value(hint: Any, empty: bool) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = type(None) in typing.get_args(hint)
    if empty and optional:
        return None
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return _value(args[0], empty)
    if choices := _choices(hint):
        return choices[0]
    origin = typing.get_origin(hint)
    return (
        {str: HOSTILE, int: 2, float: 1.5}.get(hint)
        if origin is None
        else {tuple: (HOSTILE,), dict: {"0": HOSTILE}}[origin]
        if not empty or origin is dict
        else origin()
    )


def examples(kind: type[Any]) -> Iterator[Any]:
    """Instances of `kind`: every choice of every field, with hostile text; and one with its optionals empty."""
    hints = typing.get_type_hints(kind, include_extras=False)
    fields = [f.name for f in dataclasses.fields(kind) if f.name != "code"]
    base = {n: _value(hints[n], empty=False) for n in fields}
    yield kind(**base)
    yield kind(**{n: _value(hints[n], empty=True) for n in fields})
    for name in fields:
        for choice in _choices(hints[name]):
            yield kind(**(base | {name: choice}))


def every(union: Any) -> list[Any]:
    return [e for kind in typing.get_args(union) for e in examples(kind)]


def check(words: str, fmt: str) -> None:
    assert words.strip()
    assert "None" not in words and "null" not in words and "()" not in words, words
    if fmt == "plain":
        return
    assert "<!channel>" not in words and "<script>" not in words, words  # a fact never pings nor runs
    if HOSTILE in words.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"):
        assert html.escape("<!channel>", quote=False) in words


FAILURES = every(FailureReason)
WAITING = every(QueueReason)
NOTES = every(ProfileNote)
ACTORS = every(Actor)


def test_every_kind_of_each_union_has_examples() -> None:
    for union, made in ((FailureReason, FAILURES), (QueueReason, WAITING), (ProfileNote, NOTES), (Actor, ACTORS)):
        assert {type(e) for e in made} == set(typing.get_args(union))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("reason", FAILURES, ids=repr)
def test_a_failure_reads_in_every_front_end(reason: FailureReason, fmt: str) -> None:
    failure = JobFailure(reason)
    check(failure_words.summary(failure, FORMATS[fmt]), fmt)
    if (hint := failure_words.hint(failure, FORMATS[fmt])) is not None:
        check(hint, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("reason", WAITING, ids=repr)
def test_a_queue_reason_reads_in_every_front_end(reason: QueueReason, fmt: str) -> None:
    check(waiting_words(reason, FORMATS[fmt]), fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("note", NOTES, ids=repr)
def test_a_profile_note_reads_in_every_front_end(note: ProfileNote, fmt: str) -> None:
    check(note_words(note, FORMATS[fmt]), fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("actor", ACTORS, ids=repr)
def test_who_stopped_a_job_reads_in_every_front_end(actor: Actor, fmt: str) -> None:
    check(by_words(actor, FORMATS[fmt]), fmt)


@pytest.mark.parametrize(
    ("fact", "out", "words"),
    [
        *[(f, lambda f: failure_out(JobFailure(f)), lambda f: failure_words.summary(JobFailure(f))) for f in FAILURES],
        *[(r, reason_out, waiting_words) for r in WAITING],
        *[(a, actor_out, by_words) for a in ACTORS],
    ],
    ids=repr,
)
def test_the_api_gives_the_code_the_fields_by_name_and_the_words(
    fact: Any, out: Callable[[Any], Any], words: Callable[[Any], str]
) -> None:
    body = out(fact).model_dump(mode="json")
    assert body["code"] == fact.code
    assert set(body["fields"]) == {f.name for f in dataclasses.fields(fact)} - {"code"}
    assert body["message"] == words(fact)
    check(body["message"], "plain")


def test_the_schedulers_end_leads_and_the_specific_reasons_advice_follows_over_http() -> None:
    from storage.failure_facts import CudaOom

    cause = SchedulerEnded(SlurmEnd.OUT_OF_MEMORY, "OUT_OF_MEMORY", "gpu01")
    body = failure_out(JobFailure(CudaOom("2.00 GiB"), cause))
    assert body is not None and body.code == "cuda_oom" and body.fields == {"tried_to_allocate": "2.00 GiB"}
    assert body.message.startswith("out of memory on the node (gpu01)")
    assert body.hint == "lower max_length or the batch size, or use a GPU with more memory"
    assert body.cause is not None and body.cause.code == "scheduler" and body.cause.fields["end"] == "out_of_memory"


def test_facts_of_the_web_are_html_with_each_fact_escaped() -> None:
    from storage.failure_facts import OutputUnwritable

    words = failure_words.summary(JobFailure(OutputUnwritable("out/<b>x</b>", created=False)), HTML)
    assert words == "cannot create the output folder <code>out/&lt;b&gt;x&lt;/b&gt;</code>"


def _formats_differ_only_in_markup(words: dict[str, str]) -> bool:
    unmarked = {k: v.replace("`", "").replace("<code>", "").replace("</code>", "") for k, v in words.items()}
    return len({html.unescape(v) for v in unmarked.values()}) == 1


@pytest.mark.parametrize(
    "fact", [f for f in itertools.chain(FAILURES, WAITING, NOTES, ACTORS) if HOSTILE not in repr(f)], ids=repr
)
def test_every_front_end_says_the_same_thing(fact: Any) -> None:
    render: Callable[[Any, Format], str] = (
        (lambda f, fmt: failure_words.summary(JobFailure(f), fmt))
        if type(f := fact) in typing.get_args(FailureReason)
        else waiting_words
        if type(f) in typing.get_args(QueueReason)
        else note_words
        if type(f) in typing.get_args(ProfileNote)
        else by_words
    )
    assert _formats_differ_only_in_markup({name: render(fact, fmt) for name, fmt in FORMATS.items()})


def test_events_that_tell_a_failure_or_a_stopper_are_worded_from_their_facts() -> None:
    from bot.words.events import event_text
    from storage import actors, failure_facts
    from storage.actors import Outside
    from storage.failure_facts import CudaOom, SlurmRefused
    from storage.models import Event

    oom = Event("ab3cd", "failed", "failed: cuda_oom", failure_facts.event_data(JobFailure(CudaOom("2.00 GiB"))))
    assert event_text(oom) == "failed: ran out of GPU memory (CUDA OOM, tried to allocate 2.00 GiB)"
    refused = JobFailure(SlurmRefused("refused", "invalid partition specified: <x>", "sbatch --partition=<x>"))
    launch = Event(
        "ab3cd",
        "failed",
        "could not start: slurm_refused",
        failure_facts.event_data(refused) | {"command": "sbatch --partition=<x>"},
    )
    assert event_text(launch, SLACK) == (
        "could not start: Slurm refused the job: invalid partition specified: &lt;x&gt;"
        " (the command: `sbatch --partition=&lt;x&gt;`)"
    )
    export = Event("ab3cd", "export_failed", "export failed: cuda_oom", oom.data)
    assert event_text(export).startswith("export failed: ran out of GPU memory")
    stopped = Event("ab3cd", "stopped", "stopped by outside", actors.event_data(Outside()))
    assert event_text(stopped, HTML) == "stopped by someone outside trainbot"
    plain = Event("ab3cd", "started", "started on <host> (GPU 0)")
    assert event_text(plain, HTML) == "started on &lt;host&gt; (GPU 0)"


def test_a_check_right_before_the_launch_fails_the_job_with_its_facts(tmp_path: Path) -> None:
    """runner/errors.launch_refusal: a folder taken meanwhile, or a path that now leads outside its root (a link
    made after the job was created), becomes the job's failure, worded like any other."""
    from runner.errors import OutputInUse, launch_refusal
    from runner.paths import OutsideRoot

    taken = launch_refusal(OutputInUse(tmp_path / "out", "k3x9q"))
    assert failure_words.summary(JobFailure(taken)) == f"job k3x9q writes to {tmp_path / 'out'} already"
    outside = launch_refusal(
        OutsideRoot("output_dir", Path("output/link/x"), Path("/elsewhere/x"), (Path("output"),), "[paths] output_root")
    )
    assert failure_words.summary(JobFailure(outside), SLACK) == (
        "output_dir `output/link/x` leads to `/elsewhere/x` on disk, outside `output`"
    )
    assert "`[paths] output_root`" in (failure_words.hint(JobFailure(outside), SLACK) or "")
