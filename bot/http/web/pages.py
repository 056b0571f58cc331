"""What the templates show, computed from typed values: a row of the jobs table, a job's panel, the GPUs."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from fastapi import HTTPException
from markupsafe import Markup

from bot.compare import Comparison
from bot.http.api import cursors
from bot.http.auth import Principal
from bot.words import texts
from runner import actions
from runner.actions import Action
from runner.command import SwiftCommand
from runner.config import Config
from runner.log_tail import clean_lines, read_log_tail
from runner.run_files import checkpoint_number
from storage.events import CheckpointSaved, Created, Event
from storage.jobs import JobStore
from storage.listing import NEWEST, JobFilter, ListPosition, Sort
from storage.models import ExportState, Job, JobState, Kind
from storage.profile_notes import ProfileNote

PAGE_SIZE = 50
FAILURE_TAIL_LINES = 20
ACTIONS = tuple(str(a) for a in Action)
SORT_CHOICES = {
    "-created": "newest first",
    "created": "oldest first",
    "-duration": "longest first",
    "duration": "shortest first",
    "loss": "lowest final loss first",
    "-loss": "highest final loss first",
}


@dataclass(frozen=True)
class Filters:
    """The jobs page's query: which jobs, in which order, and where the page starts (`after`) or ends (`before`):
    cursors as the API gives them (bot/http/api/cursors.py)."""

    kind: str = ""
    state: str = ""
    owner: str = ""
    q: str = ""
    sort: str = ""
    after: str = ""
    before: str = ""

    def query(self, **changes: str) -> str:
        return urlencode({k: v for k, v in vars(replace(self, **changes)).items() if v})

    @property
    def order(self) -> Sort:
        return cursors.parse_sort(self.sort) or NEWEST

    @property
    def filtered(self) -> bool:
        return bool(self.kind or self.state or self.owner or self.q)

    def where(self) -> JobFilter:
        kind = Kind(self.kind) if self.kind in ("llm", "vlm") else None
        states = None
        if self.state == "active":
            states = tuple(s for s in JobState if s.is_active)
        elif self.state in {str(s) for s in JobState}:
            states = (JobState(self.state),)
        return JobFilter(kind, states, self.owner or None, self.q or None)

    @classmethod
    def from_query(cls, query: str) -> Filters:
        """The filters of a page's query string (what a live view names its table by)."""
        from urllib.parse import parse_qs

        found = parse_qs(query)
        kind, state, owner, q, sort, after, before = (
            (found.get(k) or [""])[0] for k in ("kind", "state", "owner", "q", "sort", "after", "before")
        )
        return cls(
            kind[:10], state[:20], owner[:100], q[:100], sort if sort in SORT_CHOICES else "", after[:300], before[:300]
        )


def age(at: float | None, now: float | None = None) -> str:
    return "" if at is None else texts.duration(max(0.0, (now or time.time()) - at)) + " ago"


def time_ago(at: float | None) -> Markup:
    """`age` as the templates show it: a `<time>` whose `data-at` the page's script counts from (live pages'
    times go on ticking; the live stream leaves their text out, see bot/http/web/live.py)."""
    if at is None:
        return Markup("")
    iso = dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="seconds")
    return Markup('<time datetime="{}" data-at="{}">{}</time>').format(iso, round(at), age(at))


def allowed_actions(job: Job, who: Principal, config: Config) -> list[str]:
    """The buttons this person may press on this job now (runner/actions.py: the owner's or an admin's, and only
    where they apply), in ACTIONS' order."""
    allowed = actions.allowed_actions(job, who.caller(), config.access)
    return [str(a) for a in Action if a in allowed]


@dataclass(frozen=True)
class ActionWords:
    """How a page names an action on a job: its button, the confirm page's question, its yes, what it will do."""

    button: str
    question: str
    yes: str
    does: str = ""


def action_words(job: Job, action: str) -> ActionWords:
    """A start of an ended job resumes from its last checkpoint (runner/supervisor.restart): the button says so."""
    job_words = f"{job.name} ({job.id})" if job.name else job.id
    if action == "start" and job.state is not JobState.CREATED:
        n = checkpoint_number(job.progress.last_checkpoint)
        if n is not None:
            return ActionWords(
                f"Resume from checkpoint {n}",
                f"Resume job {job_words} from checkpoint {n}?",
                "Yes, resume it",
                f"It goes back in line and, once started, trains on from step {n} (the checkpoint "
                f"{job.progress.last_checkpoint}), writing a new run folder and appending to its log.",
            )
        return ActionWords(
            "Start again from the beginning",
            f"Start job {job_words} again from the beginning?",
            "Yes, start it again",
            "It saved no checkpoint, so it goes back in line and trains from step 0 again.",
        )
    return ActionWords(action.capitalize(), f"{action.capitalize()} job {job_words}?", f"Yes, {action} it")


def done_words(before: Job, action: Action, after: Job | None) -> str:
    """What the page says once an action was taken (`after` None: the job was deleted)."""
    if after is None:
        return f"Job {before.id} deleted (its files stay in {before.output_dir})."
    match action:
        case Action.STOP if after.state is JobState.STOPPING:
            return f"Stopping job {after.id}…"
        case Action.START:
            again = "" if before.state is JobState.CREATED else " again"
            return f"Job {after.id} is {after.state}{again}."
        case Action.EXPORT:
            return f"Exporting job {after.id} to {after.export_dir}…"
    return f"Job {after.id} is {after.state}."


async def queue_places(store: JobStore) -> dict[str, int]:
    """Queued job id -> its place in line (1 = next)."""
    queued = [j for j in await store.active() if j.state is JobState.QUEUED]
    return {j.id: n for n, j in enumerate(queued, start=1)}


@dataclass(frozen=True)
class Table:
    """A page of the jobs table: its jobs, and the queries of the pages after and before it (None: none)."""

    jobs: list[Job]
    next: str | None
    prev: str | None
    bad_cursor: bool = False  # the page asked for was not one this server gave: the first page instead


async def table_jobs(store: JobStore, filters: Filters) -> Table:
    """The page `filters` asks for; a page before the first one that comes out short is the first page."""
    sort, where = filters.order, filters.where()
    try:
        after = await cursors.decode(filters.after, store, sort) if filters.after else None
        before = await cursors.decode(filters.before, store, sort) if filters.before and not after else None
    except HTTPException:
        return replace(await table_jobs(store, replace(filters, after="", before="")), bad_cursor=True)
    page = await store.page(where, sort=sort, limit=PAGE_SIZE, after=after, before=before)
    if before is not None and (page.prev is None and len(page.jobs) < PAGE_SIZE):
        page = await store.page(where, sort=sort, limit=PAGE_SIZE)
    return Table(page.jobs, _link(filters, page.next, "after", sort), _link(filters, page.prev, "before", sort))


def _link(filters: Filters, position: ListPosition | None, way: str, sort: Sort) -> str | None:
    if position is None:
        return None
    cursor = cursors.encode(position, sort)
    return filters.query(after=cursor if way == "after" else "", before=cursor if way == "before" else "")


async def table_count(store: JobStore, filters: Filters) -> str:
    """How many jobs the table holds, in words: `1,234 jobs`, `more than 1,000 jobs`."""
    count = await store.count(filters.where())
    return f"{texts.count_words(count)} job{'s' * (count.n != 1)}"


def facts(job: Job) -> list[tuple[str, Any]]:
    """What a job's page and row tell to judge it by, those it has: (label, value in words)."""
    p = job.progress
    rows: list[tuple[str, Any]] = [
        ("Started", _clock(job.started_at)),
        ("Ended", _clock(job.finished_at)),
        ("Duration", texts.duration(job.duration_s) if job.duration_s is not None else None),
        ("GPU-hours", f"{job.gpu_hours:.2f}" if job.gpu_hours is not None else None),
        ("Final train loss", f"{p.loss:.4g}" if p.loss is not None else None),
        ("Final eval loss", f"{p.eval_loss:.4g}" if p.eval_loss is not None else None),
        (
            "Exported",
            job.export_dir
            if job.export_state is ExportState.EXPORTED
            else (str(job.export_state).replace("_", " ") if job.export_state is not ExportState.NONE else "no"),
        ),
    ]
    return [(k, v) for k, v in rows if v is not None]


def _clock(at: float | None) -> str | None:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at)) if at else None


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


# The job page's small charts, in this order: an id, its title, the y axis's title, and the series it draws
# (runner/metrics' names, each with its label). A chart shows once one of its series has a point.
METRIC_CHARTS: tuple[dict[str, object], ...] = (
    {"id": "chart", "title": "Loss", "y": "loss", "series": [["loss", "train loss"], ["eval_loss", "eval loss"]]},
    {"id": "chart-lr", "title": "Learning rate", "y": "learning rate", "series": [["learning_rate", "learning rate"]]},
    {"id": "chart-grad", "title": "Gradient norm", "y": "grad norm", "series": [["grad_norm", "grad norm"]]},
    {
        "id": "chart-acc",
        "title": "Token accuracy",
        "y": "accuracy",
        "series": [["token_acc", "train"], ["eval_token_acc", "eval"]],
    },
    {"id": "chart-mem", "title": "GPU memory", "y": "GiB", "series": [["memory_gib", "peak memory"]]},
    {"id": "chart-speed", "title": "Speed", "y": "s / step", "series": [["seconds_per_step", "seconds per step"]]},
    {
        "id": "chart-tokens",
        "title": "Tokens per second",
        "y": "tokens / s",
        "series": [["tokens_per_s", "tokens per second"]],
    },
)


def script_json(value: object) -> Markup:
    """JSON to put inside a <script type="application/json">: no `</script>` or `<!--` can end it early."""
    return script_json_text(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def compare_data(cmp: Comparison) -> Markup:
    """The compared runs' loss and eval-loss points, for charts.js (each series' JSON made once, by its
    Metrics: numbers and ids only, nothing to escape)."""
    runs = ",".join(
        f'{{"id":{json.dumps(r.job.id)},"loss":{r.metrics.points_json("loss")},'
        f'"eval_loss":{r.metrics.points_json("eval_loss")}}}'
        for r in cmp.runs
    )
    return script_json_text(f"[{runs}]")


def script_json_text(text: str) -> Markup:
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))
