"""What each `/train` command does, independent of where it was typed (console or Slack).

A handler takes the text and who typed it, and returns a Reply; people are told about job changes through the
outbox, not here. Each front end gives its `Format` (bot/words/format.py), through which every fact not made by
trainbot (typed text, paths, log lines, error text) is written into a reply. Access rules are runner/access.py's,
the same for every front end.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path

from bot import charts
from bot.chat.grammar import (
    Command,
    CompareJobs,
    CreateJob,
    Help,
    JobCommand,
    ListJobs,
    Rejection,
    ShowGpus,
    ShowStatus,
    TryJob,
    help_text,
    out_example,
    parse,
)
from bot.compare import compare
from bot.words import refusals, texts
from bot.words.cluster import render_gpu_nodes
from bot.words.format import PLAIN, Format
from bot.words.profiles import notes_words
from runner import leases
from runner.access import Caller
from runner.actions import Action
from runner.log_tail import read_log_tail
from runner.runtime import Runtime
from runner.try_types import Message, TryAsk, TryEvent
from storage.errors import JobError
from storage.models import Job, JobState

LOG_LINES = 40


@dataclass(frozen=True)
class Image:
    """A picture that goes with a reply (a comparison's chart): PNG bytes and the name to give its file."""

    filename: str
    title: str
    png: bytes


@dataclass(frozen=True)
class Reply:
    text: str
    public: bool = False  # concerns the channel (a new job), not only the asker
    job_id: str | None = None
    file: Path | None = None  # the whole log, when asked for
    ok: bool = True
    try_ask: TryAsk | None = None  # `try`: what was asked of the job's model
    answer: AsyncGenerator[TryEvent, None] | None = None  # `try`: its answer, to be read as it is generated
    image: Image | None = None  # posted in `job_id`'s thread (Slack) or saved (the console)


class Handlers:
    def __init__(self, runtime: Runtime, fmt: Format = PLAIN) -> None:
        self.runtime = runtime
        self.fmt = fmt
        self.config = runtime.config
        self.sup = runtime.supervisor
        self.store = runtime.store

    def parse(self, text: str) -> Command | Rejection:
        # Slack escapes &, < and > in command text
        return parse(
            html.unescape(text),
            output_root=self.config.output_root,
            base_dir=self.config.base_dir,
            model_roots=self.config.model_roots,
            data_roots=self.config.data_roots,
        )

    async def handle(self, text: str, caller: Caller) -> Reply:
        command = self.parse(text)
        if isinstance(command, Rejection):
            return Reply(self.fmt.text(command.text()), ok=False)
        try:
            return await self.run(command, caller)
        except JobError as exc:
            return Reply(refusals.error_text(exc, self.fmt), ok=False)

    async def run(self, command: Command, caller: Caller) -> Reply:
        match command:
            case Help(topic):
                example = out_example(self.config.output_root, self.config.base_dir)
                return Reply(help_text(topic, out_example=example))
            case CreateJob():
                return await self.create(command, caller)
            case JobCommand():
                return await self.job_command(command, caller)
            case TryJob():
                return await self.try_job(command, caller)
            case CompareJobs(job_ids):
                return await self.compare(job_ids)
            case ListJobs(kind, state):
                states = None
                if state == "active":
                    states = [s for s in JobState if s.is_active]
                elif state is not None:
                    states = [JobState(state)]
                jobs = await self.store.list_jobs(kind=kind, states=states, limit=50)
                title = f"{(str(kind).upper() + ' ') if kind else ''}jobs" + (f" ({state})" if state else "")
                return Reply(texts.job_list(jobs, title, self.fmt))
            case ShowStatus():
                return Reply(texts.job_list(await self.store.active(), "Active jobs", self.fmt))
            case ShowGpus():
                holders = leases.held(await self.store.holding())
                cluster = await self.sup.backend.cluster_gpus()
                if cluster is not None:
                    return Reply(render_gpu_nodes(cluster, self.fmt))
                return Reply(texts.gpu_table(self.runtime.probe.snapshot(), holders, self.fmt))
        raise AssertionError(command)

    async def compare(self, job_ids: tuple[str, ...]) -> Reply:
        cmp = await compare(self.store, job_ids)
        png = await asyncio.to_thread(charts.compare_png, cmp)
        image = Image(charts.compare_filename(cmp), f"Loss of jobs {', '.join(cmp.ids)}", png) if png else None
        text = texts.comparison_text(cmp, self.fmt)
        if image is None:
            text += "\nNone of them has logged a loss yet: no chart."
        return Reply(text, job_id=cmp.ids[0], image=image)

    async def create(self, command: CreateJob, caller: Caller) -> Reply:
        req = command.request(caller.user_id, caller.channel_id)
        fmt = self.fmt
        if command.dry_run:
            dry = await self.runtime.jobs.dry_run(req, caller)  # paths resolved on disk, as creating the job would
            plan, warnings = dry.plan, dry.warnings
            text = f"Dry run (nothing started). ms-swift {plan.version} would run:\n{fmt.block(plan.display)}"
            if plan.notes:
                text += f"\nSpeed profile {fmt.code(command.profile)} changed: " + notes_words(plan.notes, fmt)
            return Reply(text + "".join(f"\n⚠️ {refusals.warning_text(w, fmt)}" for w in warnings))
        job = (await self.runtime.jobs.create(req, caller)).job
        return Reply(
            f"Job {fmt.code(job.id)} {texts.start_reply(job, fmt)}: {command.kind.upper()} on "
            f"{texts.gpus_label(job.gpus)}, output {fmt.code(job.output_dir)}",
            public=True,
            job_id=job.id,
            ok=job.state is not JobState.FAILED,
        )

    async def job_command(self, command: JobCommand, caller: Caller) -> Reply:
        job = await self.runtime.jobs.get(command.job_id)
        action, fmt, jobs = command.action, self.fmt, self.runtime.jobs
        match action:
            case "status":
                return Reply(texts.job_status(job, fmt), job_id=job.id)
            case "show":
                return Reply(texts.job_details(job, await self.store.events(job.id), fmt), job_id=job.id)
            case "logs":
                return self.logs(job, command.lines or LOG_LINES, command.full)
            case "stop":
                job = await self._act(job.id, Action.STOP, caller)
                return Reply(
                    f"Stopping job {fmt.code(job.id)}…"
                    if job.state is JobState.STOPPING
                    else f"Job {fmt.code(job.id)} is {job.state}.",
                    job_id=job.id,
                )
            case "start":
                again = "" if job.state is JobState.CREATED else " again"
                job = await self._act(job.id, Action.START, caller)
                return Reply(f"Job {fmt.code(job.id)} is {job.state}{again}.", job_id=job.id)
            case "export":
                job = await self._act(job.id, Action.EXPORT, caller)
                return Reply(f"Exporting job {fmt.code(job.id)} to {fmt.code(job.export_dir)}…", job_id=job.id)
            case "delete":
                await jobs.act(job.id, Action.DELETE, caller)
                return Reply(
                    f"Job {fmt.code(job.id)} deleted (its files stay in {fmt.code(job.output_dir)}).", job_id=job.id
                )
        raise AssertionError(action)

    async def _act(self, job_id: str, action: Action, caller: Caller) -> Job:
        job = await self.runtime.jobs.act(job_id, action, caller)
        assert job is not None  # only a delete forgets the job
        return job

    async def try_job(self, command: TryJob, caller: Caller) -> Reply:
        """Refusals come now (as an error reply); the answer is the reply's stream, read by the front end."""
        messages = (Message("user", command.question),) if command.question else ()
        ask = TryAsk(command.job_id, messages, command.checkpoint, command.gpus, command.max_tokens)
        stream = await self.runtime.tries.open(ask, caller)
        what = (
            f"asking job {self.fmt.code(command.job_id)}'s model"
            if command.question
            else f"checking job {self.fmt.code(command.job_id)}'s model: who it says it is, fine-tuned and base"
        )
        return Reply(what + "…", job_id=command.job_id, try_ask=ask, answer=stream)

    def logs(self, job: Job, lines: int, full: bool) -> Reply:
        fmt = self.fmt
        log = job.train_run.log
        if log is None or not log.exists():
            return Reply(f"Job {fmt.code(job.id)} has no log yet.", job_id=job.id)
        if full:
            return Reply(f"The whole log of job {fmt.code(job.id)}.", job_id=job.id, file=log)
        tail = read_log_tail(log).replace("\r", "\n").splitlines()
        shown = "\n".join(line for line in tail if line.strip())
        last = "\n".join(shown.splitlines()[-lines:])
        return Reply(f"Last {lines} lines of {fmt.code(log)}:\n{fmt.block(last)}", job_id=job.id)
