"""Notices are typed facts: stored and read back as the same type, old rows upgraded, every kind told by every
front end (Slack thread, console), and a row no type fits told as its topic, never an error."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest

from bot.slack import views
from bot.words import notices as notice_words
from bot.words.format import HTML, PLAIN, SLACK
from storage.actors import Outside, User
from storage.failure_facts import DiskFull, JobFailure, LegacyFailure
from storage.jobs import JobStore
from storage.models import Job, JobState, Kind
from storage.notices import (
    SCHEMA_VERSION,
    CheckpointSaved,
    EvalDone,
    ExportFailed,
    ExportStarted,
    JobCreated,
    JobFailed,
    JobQueued,
    JobStarted,
    JobStopped,
    LeftQueue,
    Notice,
    NoticeFacts,
    Unreadable,
    decode,
    encode,
)
from storage.profile_notes import LegacyNote, LigerKernels
from storage.waiting import LegacyReason, SlurmPending

HOSTILE = "<!channel> *b* `x`"
EVERY_KIND: list[type[NoticeFacts]] = list(typing.get_args(NoticeFacts))


def example(kind: type[NoticeFacts]) -> NoticeFacts:
    """An instance of `kind` with every text field hostile (what a user or a log could put there)."""
    values = {
        "command": HOSTILE,
        "failure": JobFailure(LegacyFailure(HOSTILE, HOSTILE)),
        "by": User("U0ALICE") if kind is JobStopped else "U0ALICE",
        "host": HOSTILE,
        "tail": (HOSTILE,),
        "reason": LegacyReason(HOSTILE),
        "path": HOSTILE,
        "export_dir": HOSTILE,
        "topic": HOSTILE,
        "profile_notes": (LegacyNote(HOSTILE),),
        "step": 10,
        "checkpoint": HOSTILE,
        "last_checkpoint": HOSTILE,
        "resume_from": HOSTILE,
    }
    names = {f.name for f in dataclasses.fields(kind)}
    return kind(**{k: v for k, v in values.items() if k in names})  # type: ignore[arg-type]


def test_the_union_has_every_kind_once() -> None:
    kinds = [k.__dataclass_fields__["kind"].default for k in EVERY_KIND]
    assert len(EVERY_KIND) >= 17 and len(set(kinds)) == len(kinds)


@pytest.mark.parametrize("kind", EVERY_KIND, ids=lambda k: k.__name__)
def test_every_kind_reads_back_as_itself(kind: type[NoticeFacts]) -> None:
    facts = example(kind)
    stored = json.loads(encode(facts))
    assert stored["v"] == SCHEMA_VERSION and "kind" not in stored
    assert decode(facts.kind, encode(facts)) == facts


@pytest.mark.parametrize("kind", EVERY_KIND, ids=lambda k: k.__name__)
def test_every_kind_is_told_by_every_front_end_and_pings_nobody(kind: type[NoticeFacts]) -> None:
    notice = Notice("ab3cd", example(kind), id=1)
    plain = notice_words.notice_text(notice, PLAIN)
    slack = views.notice_message(notice, None)
    assert plain.strip() and "ab3cd" in plain and slack.text.strip() and slack.blocks
    shown = json.dumps(slack.blocks) + slack.text
    assert "<!channel>" not in shown
    assert ("&lt;!channel&gt;" in shown) == (HOSTILE in repr(notice.facts))  # each typed fact is shown, escaped
    assert views.role(notice.facts) in views.Role


async def test_the_outbox_keeps_the_type(tmp_path: Path) -> None:
    store = await JobStore.open(tmp_path / "s.db")
    try:
        await store.register_reader("console", keep_s=60)  # without a reader nothing would be kept
        created = JobCreated(command="swift sft", profile="fast", profile_notes=(LigerKernels(),))
        job = await store.create(
            Job(id="", kind=Kind.LLM, state=JobState.QUEUED, output_dir="o", gpus=("0",), argv=("swift",)),
            notice=Notice("", created),
        )
        await store.update(job.id, notice=Notice(job.id, EvalDone(step=10, epoch=0.5, metrics={"eval_loss": 6.9})))
        got = [n.facts for n in await store.notices(job.id)]
        assert got == [created, EvalDone(step=10, epoch=0.5, metrics={"eval_loss": 6.9})]
        assert isinstance(got[1], EvalDone) and got[1].eval_loss == 6.9
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("topic", "data", "expected"),
    [
        ("job_stopped", {"by": "U1", "was_queued": True}, LeftQueue(by="U1")),
        (
            "job_failed",
            {"summary": "OOM", "hint": None, "class": "oom", "tail": ["a"], "duration_s": 3.0},
            JobFailed(failure=JobFailure(LegacyFailure("OOM")), tail=("a",), duration_s=3.0),
        ),
        (
            "eval",
            {"step": 10, "epoch": 0.5, "eval_loss": 6.9, "eval_token_acc": 0.1},
            EvalDone(step=10, epoch=0.5, metrics={"eval_loss": 6.9, "eval_token_acc": 0.1}),
        ),
        ("checkpoint", {"step": 10, "path": "/c"}, CheckpointSaved(step=10, path="/c")),
        (
            "job_queued",
            {"reason": "GPU 0 is held by job x", "position": 2},
            JobQueued(reason=LegacyReason("GPU 0 is held by job x"), position=2),
        ),
        (
            "job_started",
            {"command": "swift sft", "host": "h", "gpus": ["0", "1"]},
            JobStarted(command="swift sft", host="h", gpus=("0", "1")),
        ),
        (
            "export_started",
            {"by": "U1", "checkpoint": "/c", "command": "swift export"},  # every export ran on the CPU
            ExportStarted(by="U1", checkpoint="/c", command="swift export"),
        ),
    ],
)
def test_rows_written_before_the_types_are_read_into_them(
    topic: str, data: dict[str, object], expected: NoticeFacts
) -> None:
    assert decode(topic, json.dumps(data)) == expected


@pytest.mark.parametrize(
    ("topic", "data"),
    [
        ("job_teleported", "{}"),  # a kind this bot does not know
        ("job_started", json.dumps({"v": 99})),  # a newer schema
        ("job_started", json.dumps({"v": 1, "gpus": 7})),  # a field of the wrong type
        ("export_failed", "not json"),
    ],
)
def test_a_row_no_type_fits_is_told_as_its_topic(topic: str, data: str) -> None:
    facts = decode(topic, data)
    assert facts == Unreadable(topic=topic)
    assert notice_words.notice_text(Notice("ab3cd", facts)) == f"job ab3cd: {topic}"


def test_an_export_start_says_where_it_runs() -> None:
    started = ExportStarted(by="U1", checkpoint="/o/checkpoint-9", gpus=("2",))
    on_gpu = notice_words.notice_text(Notice("ab3cd", started))
    assert on_gpu == "📦 job ab3cd: export started by U1 on GPU 2 from /o/checkpoint-9"
    on_cpu = notice_words.notice_text(Notice("ab3cd", ExportStarted(checkpoint="/o/checkpoint-9")), SLACK)
    assert on_cpu == "📦 job `ab3cd`: export started by the console on the CPU from `/o/checkpoint-9`"


def test_an_export_failure_tells_its_hint_but_a_missing_one_is_not_none() -> None:
    words = notice_words.notice_text(
        Notice("ab3cd", ExportFailed(failure=JobFailure(LegacyFailure("disk full")))), SLACK
    )
    assert words == "❌ job `ab3cd`: export failed: disk full"


@pytest.mark.parametrize(
    ("topic", "data", "expected"),
    [
        (
            "job_failed",
            {"v": 1, "summary": "ran out of GPU memory", "hint": "lower max_length", "failure_class": "cuda_oom"},
            JobFailed(failure=JobFailure(LegacyFailure("ran out of GPU memory", "lower max_length"))),
        ),
        (
            "job_stopped",
            {"v": 1, "by": "someone outside trainbot", "step": 3},
            JobStopped(by=User("someone outside trainbot"), step=3),
        ),
        (
            "job_created",
            {"v": 1, "command": "swift sft", "profile_notes": ["Liger fused kernels"]},
            JobCreated(command="swift sft", profile_notes=(LegacyNote("Liger fused kernels"),)),
        ),
        (
            "job_queued",
            {"v": 1, "backend": "slurm", "backend_job_id": "52", "pending_reason": "Slurm: held (X)"},
            JobQueued(backend="slurm", backend_job_id="52", pending_reason=LegacyReason("Slurm: held (X)")),
        ),
    ],
)
def test_v1_rows_keep_their_words_as_legacy_facts(topic: str, data: dict[str, object], expected: NoticeFacts) -> None:
    facts = decode(topic, json.dumps(data))
    assert facts == expected
    assert decode(topic, encode(facts)) == facts  # and they are written back as today's schema


def test_a_stop_from_outside_is_told_as_such_everywhere() -> None:
    stopped = Notice("ab3cd", JobStopped(by=Outside(), step=4))
    assert notice_words.notice_text(stopped) == "⏹️ job ab3cd stopped by someone outside trainbot at step 4"
    assert "someone outside trainbot" in views.notice_message(stopped, None).text


@pytest.mark.parametrize("kind", EVERY_KIND, ids=lambda k: k.__name__)
def test_a_notice_with_its_facts_unknown_shows_no_none(kind: type[NoticeFacts]) -> None:
    """Fields a run never filled (no step, no checkpoint, no host) leave words out, never say None or ()."""
    extra: dict[str, object] = {"failure": JobFailure(DiskFull())} if kind in (JobFailed, ExportFailed) else {}
    if kind is JobQueued:
        extra = {"backend": "slurm", "backend_job_id": "52", "pending_reason": SlurmPending("PENDING", "")}
    notice = Notice("ab3cd", kind(**extra))  # type: ignore[arg-type]
    for words in (
        notice_words.notice_text(notice, PLAIN),
        notice_words.notice_text(notice, SLACK),
        notice_words.notice_text(notice, HTML),
        views.notice_message(notice, None).text,
    ):
        assert "None" not in words and "null" not in words and "()" not in words, words
