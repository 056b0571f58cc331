"""Events are typed facts: stored and read back as the same type, rows of before shown with their text, and every
kind worded by every front end (console, Slack, the API's JSON, the web page) with what a user typed kept inert."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import typing
from pathlib import Path

import pytest

from bot.http.web.words import event_html
from bot.words import failures as failure_words
from bot.words import texts
from bot.words.events import event_json, event_text
from bot.words.format import HTML, PLAIN, SLACK
from storage.actors import Outside, User
from storage.events import (
    CheckpointSaved,
    Created,
    Event,
    EventFacts,
    ExportFailed,
    ExportStarted,
    Failed,
    Restarted,
    Stopped,
    Told,
    TrySessionEnded,
    TrySessionLoaded,
    TrySessionStarted,
    decode,
    encode,
)
from storage.failure_facts import CudaOom, JobFailure, SwiftMissing, Unknown
from storage.jobs import JobStore
from storage.models import Job, JobState, Kind
from storage.profile_notes import LegacyNote, LigerKernels

HOSTILE = "<!channel> *b* `x` <b>&amp;"
EVERY_KIND: list[type[EventFacts]] = list(typing.get_args(EventFacts))


def example(kind: type[EventFacts]) -> EventFacts:
    """An instance of `kind` with every text field hostile (what a user, a path or a log line could put there)."""
    values = {
        "by": User("U0ALICE"),
        "backend": HOSTILE,
        "backend_job_id": HOSTILE,
        "host": HOSTILE,
        "gpus": ("0",),
        "step": 10,
        "path": HOSTILE,
        "metrics": {"eval_loss": 0.5},
        "failure": JobFailure(Unknown(exception=HOSTILE)),
        "profile_notes": (LegacyNote(HOSTILE),),
        "resume_from": HOSTILE,
        "command": HOSTILE,
        "export_dir": HOSTILE,
        "topic": HOSTILE,
        "text": HOSTILE,
        "load_s": 12.34,
        "warm": True,
        "why": "gpu_wanted",
    }
    names = {f.name for f in dataclasses.fields(kind)}
    return kind(**{k: v for k, v in values.items() if k in names})  # type: ignore[arg-type]


def test_the_union_has_every_kind_once() -> None:
    kinds = [k.__dataclass_fields__["kind"].default for k in EVERY_KIND]
    assert len(EVERY_KIND) >= 18 and len(set(kinds)) == len(kinds)


@pytest.mark.parametrize("kind", EVERY_KIND, ids=lambda k: k.__name__)
def test_every_kind_reads_back_as_itself(kind: type[EventFacts]) -> None:
    facts = example(kind)
    if isinstance(facts, Told):
        return  # never written: what the store reads where it has no type
    stored = json.loads(encode(facts))
    assert stored["v"] == 1 and "kind" not in stored
    assert decode(facts.kind, encode(facts), "") == facts


@pytest.mark.parametrize("kind", EVERY_KIND, ids=lambda k: k.__name__)
def test_every_kind_is_worded_by_every_front_end_with_typed_text_inert(kind: type[EventFacts]) -> None:
    facts = example(kind)
    plain, slack, web = event_text(facts, PLAIN), event_text(facts, SLACK), str(event_html(Event("j1", facts)))
    assert plain and slack and web
    assert "<!channel>" not in slack and "<!channel>" not in web and "<b>" not in web  # no live mention or markup
    if "<!channel>" in plain:  # shown as typed: escaped for Slack and for HTML
        assert "&lt;!channel&gt;" in slack and "&lt;!channel&gt;" in web
    api = event_json(Event("j1", facts, at=1.5, id=7))
    assert api["kind"] == (facts.topic if isinstance(facts, Told) else facts.kind) and api["message"] == plain
    stored = {} if isinstance(facts, Told) else json.loads(encode(facts))
    assert api["data"] == (
        {"topic": HOSTILE, "text": HOSTILE}
        if isinstance(facts, Told)
        else {k: v for k, v in stored.items() if k != "v"}
    )  # facts as their code and fields
    json.dumps(api)  # JSON as it is


def test_events_say_what_the_console_said_before_they_were_typed() -> None:
    assert event_text(Created(by=None)) == "created by the console"
    assert (
        event_text(Restarted(by=User("U0ALICE"), resume_from="/o/checkpoint-4"), SLACK)
        == "started again by <@U0ALICE>, resuming from `/o/checkpoint-4`"
    )
    assert event_text(Restarted(by=None)) == "started again by the console, from the start (no checkpoint yet)"
    assert (
        event_text(ExportStarted(by=User("bob"), gpus=("0",), command="swift export"))
        == "export started by bob on GPU 0: swift export"
    )
    assert (
        event_text(ExportStarted(command="swift export", again=True))
        == "export started again after a restart of the bot: swift export"
    )
    assert (
        event_text(Failed(failure=JobFailure(SwiftMissing("/no/swift")), command="swift sft"))
        == f"could not start: {failure_words.summary(JobFailure(SwiftMissing('/no/swift')))} (the command: swift sft)"
    )
    assert event_text(Failed(failure=JobFailure(CudaOom()))) == "failed: ran out of GPU memory (CUDA OOM)"
    assert event_text(Stopped(by=Outside())) == "stopped by someone outside trainbot"
    assert event_text(Created(by=User("U1"), profile_notes=(LigerKernels(),))).startswith("created by U1 (profile: ")
    assert event_text(CheckpointSaved(step=4, path="/o/c-4"), HTML) == "checkpoint saved at step 4: <code>/o/c-4</code>"


async def test_rows_of_before_the_types_are_shown_with_their_text(store: JobStore, tmp_path: Path) -> None:
    job = await store.create(
        Job(id="", kind=Kind.LLM, state=JobState.QUEUED, output_dir="/o", gpus=("0",), argv=("swift",))
    )
    await store.add_event(job.id, CheckpointSaved(step=4, path="/o/checkpoint-4"))
    with sqlite3.connect(tmp_path / "db" / "trainbot.db") as raw:  # as an older trainbot wrote them
        raw.execute(
            "INSERT INTO events (job_id, kind, message, data, at) VALUES (?, 'stopping', "
            "'stop requested by <@U1>', '{}', 2.0)",
            (job.id,),
        )
        raw.execute(
            "INSERT INTO events (job_id, kind, message, facts, at) VALUES (?, 'from_the_future', '', "
            "'{\"v\": 9}', 3.0)",
            (job.id,),
        )
    events = await store.events(job.id)
    assert [e.kind for e in events] == ["created", "checkpoint", "stopping", "from_the_future"]
    assert events[1].facts == CheckpointSaved(step=4, path="/o/checkpoint-4")
    assert events[2].facts == Told(topic="stopping", text="stop requested by <@U1>")
    assert event_text(events[2].facts, SLACK) == "stop requested by &lt;@U1&gt;"  # inert, as all stored text
    assert event_text(events[3].facts) == "from_the_future"
    details = texts.job_details(await store.require(job.id), events)
    assert "checkpoint saved at step 4: /o/checkpoint-4" in details and "stop requested by <@U1>" in details


async def test_events_a_bot_of_migration_10_kept_with_facts_in_their_data_read_back_typed(tmp_path: Path) -> None:
    """Before events were typed, a created event kept the profile's notes in its data, and a failure or who stopped
    a job were there too (their message only a code), and a try session's where it ran, how long it loaded and why
    it ended: the migration makes them the events' facts."""
    from storage.migrations import MIGRATIONS

    path = tmp_path / "old.db"
    oom = {"reason": {"tried_to_allocate": "2.00 GiB", "code": "cuda_oom"}, "cause": None}
    with sqlite3.connect(path) as raw:
        for sql in MIGRATIONS[:10]:
            raw.executescript(sql)
        raw.execute("PRAGMA user_version = 10")
        raw.execute(
            "INSERT INTO jobs (id, kind, recipe, state, argv, gpus, output_dir, created_at, updated_at) "
            "VALUES ('aaaaa', 'llm', 'llm', 'failed', '[]', '[]', '/o/a', 1, 1)"
        )
        rows = [
            ("created", "created by U1", {"profile_notes": [{"code": "liger_kernels"}, "Liger on"]}),
            ("failed", "failed: cuda_oom", {"failure": oom}),
            ("export_failed", "export could not start: cuda_oom", {"failure": oom}),
            ("stopped", "stopped by outside", {"by": {"code": "outside"}}),
            ("started", "started on <h> (GPU 0)", {}),
            ("try_started", "try_started", {"gpus": ["0"]}),
            ("try_loaded", "try_loaded", {"load_s": 3.4, "warm": True}),
            ("try_loaded", "try_loaded", {"load_s": 12, "warm": False}),
            ("try_ended", "try_ended", {"why": "idle"}),
        ]
        for kind, message, data in rows:
            raw.execute(
                "INSERT INTO events (job_id, kind, message, data, at) VALUES ('aaaaa', ?, ?, ?, 1)",
                (kind, message, json.dumps(data)),
            )
    store = await JobStore.open(path)
    try:
        facts = [e.facts for e in await store.events("aaaaa")]
    finally:
        await store.close()
    failure = JobFailure(CudaOom("2.00 GiB"))
    assert facts == [
        Created(by=User("U1"), profile_notes=(LigerKernels(), LegacyNote("Liger on"))),
        Failed(failure=failure),
        ExportFailed(failure=failure, at_start=True),
        Stopped(by=Outside()),
        Told(topic="started", text="started on <h> (GPU 0)"),
        TrySessionStarted(gpus=("0",)),
        TrySessionLoaded(load_s=3.4, warm=True),
        TrySessionLoaded(load_s=12.0, warm=False),
        TrySessionEnded(why="idle"),
    ]
    assert event_text(facts[1]) == "failed: ran out of GPU memory (CUDA OOM, tried to allocate 2.00 GiB)"
    assert [event_text(f) for f in facts[-4:]] == [
        "try: on GPU 0",
        "try: model loaded in 3.4 s (warm)",
        "try: model loaded in 12.0 s (afresh)",
        "try session ended: idle",
    ]
