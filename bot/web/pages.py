"""What the templates show, computed from typed values: a row of the jobs table, a job's panel, the GPUs."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from markupsafe import Markup

from bot import texts
from bot.api.auth import Principal
from runner import actions
from runner.actions import Action
from runner.command import SwiftCommand
from runner.config import Config
from runner.log_tail import clean_lines, read_log_tail
from storage.events import CheckpointSaved, Created, Event
from storage.jobs import JobStore
from storage.models import Job, JobState
from storage.profile_notes import ProfileNote

PAGE_SIZE = 50
FAILURE_TAIL_LINES = 20
ACTIONS = tuple(str(a) for a in Action)


@dataclass(frozen=True)
class Filters:
    kind: str = ""
    state: str = ""
    owner: str = ""

    def query(self) -> str:
        from urllib.parse import urlencode

        return urlencode({k: v for k, v in vars(self).items() if v})

    @classmethod
    def from_query(cls, query: str) -> Filters:
        """The filters of a page's query string (what a live view names its table by)."""
        from urllib.parse import parse_qs

        found = parse_qs(query)
        kind, state, owner = ((found.get(k) or [""])[0] for k in ("kind", "state", "owner"))
        return cls(kind, state, owner[:100])


def age(at: float | None, now: float | None = None) -> str:
    return "" if at is None else texts.duration(max(0.0, (now or time.time()) - at)) + " ago"


def time_ago(at: float | None) -> Markup:
    """`age` as the templates show it: a `<time>` whose `data-at` the page's script counts from (live pages'
    times go on ticking; the live stream leaves their text out, see bot/web/live.py)."""
    if at is None:
        return Markup("")
    iso = dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="seconds")
    return Markup('<time datetime="{}" data-at="{}">{}</time>').format(iso, round(at), age(at))


def allowed_actions(job: Job, who: Principal, config: Config) -> list[str]:
    """The buttons this person may press on this job now (runner/actions.py: the owner's or an admin's, and only
    where they apply), in ACTIONS' order."""
    allowed = actions.allowed_actions(job, who.caller(), config.access)
    return [str(a) for a in Action if a in allowed]


async def queue_places(store: JobStore) -> dict[str, int]:
    """Queued job id -> its place in line (1 = next)."""
    queued = [j for j in await store.active() if j.state is JobState.QUEUED]
    return {j.id: n for n, j in enumerate(queued, start=1)}


async def table_jobs(store: JobStore, filters: Filters) -> list[Job]:
    from storage.models import Kind

    kind = Kind(filters.kind) if filters.kind in ("llm", "vlm") else None
    states = None
    if filters.state == "active":
        states = [s for s in JobState if s.is_active]
    elif filters.state in {str(s) for s in JobState}:
        states = [JobState(filters.state)]
    if not filters.owner:
        return await store.list_jobs(kind=kind, states=states, limit=PAGE_SIZE)
    jobs = await store.list_jobs(kind=kind, states=states, limit=PAGE_SIZE * 20)  # owner: not an indexed column
    return [j for j in jobs if j.user_id == filters.owner][:PAGE_SIZE]


@dataclass(frozen=True)
class JobFacts:
    """A job's page, beyond the job itself."""

    command: str
    profile_notes: list[ProfileNote]
    checkpoints: list[str]
    failure_tail: list[str]
    events: list[Event]


async def job_facts(store: JobStore, job: Job) -> JobFacts:
    events = await store.events(job.id)
    created = next((e.facts for e in events if isinstance(e.facts, Created)), None)  # notices go once told
    notes = list(created.profile_notes) if created else []
    checkpoints = [e.facts.path for e in events if isinstance(e.facts, CheckpointSaved) and e.facts.path]
    tail: list[str] = []
    if job.state is JobState.FAILED and (log := job.train_run.log) is not None:
        tail = clean_lines(read_log_tail(log))[-FAILURE_TAIL_LINES:]
    command = SwiftCommand(job.argv, job.env).display() if job.argv else ""
    return JobFacts(command, notes, checkpoints, tail, events)
