"""What the templates show, computed from typed values: a row of the jobs table, a job's panel, the GPUs."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass

from markupsafe import Markup

from bot.compare import Comparison
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
    if action == "start" and job.state is not JobState.CREATED:
        n = checkpoint_number(job.progress.last_checkpoint)
        if n is not None:
            return ActionWords(
                f"Resume from checkpoint {n}",
                f"Resume job {job.id} from checkpoint {n}?",
                "Yes, resume it",
                f"It goes back in line and, once started, trains on from step {n} (the checkpoint "
                f"{job.progress.last_checkpoint}), writing a new run folder and appending to its log.",
            )
        return ActionWords(
            "Start again from the beginning",
            f"Start job {job.id} again from the beginning?",
            "Yes, start it again",
            "It saved no checkpoint, so it goes back in line and trains from step 0 again.",
        )
    return ActionWords(action.capitalize(), f"{action.capitalize()} job {job.id}?", f"Yes, {action} it")


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
