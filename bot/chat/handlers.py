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
    AddNote,
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
from storage.errors import JobError, JobNotFound
from storage.listing import JobFilter
from storage.models import Job, JobState

LOG_LINES = 40
LIST_LIMIT = 50


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
        return await self.answer(command, caller)

    async def answer(self, command: Command, caller: Caller) -> Reply:
        """A typed command (a parsed line, or a button standing for one), its refusal worded as a reply."""
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
            case ListJobs(kind, state, text):
                states = None
                if state == "active":
                    states = tuple(s for s in JobState if s.is_active)
                elif state is not None:
                    states = (JobState(state),)
                title = f"{(str(kind).upper() + ' ') if kind else ''}jobs" + (f" ({state})" if state else "")
                if text is not None:
                    title += f" matching {self.fmt.code(text)}"
                return await self.listed(JobFilter(kind, states, text=text), title)
            case ShowStatus(None):
                return Reply(texts.job_list(await self.store.active(), "Active jobs", self.fmt))
            case ShowStatus(str(ref)):
                return await self.status_by_name(ref)
            case AddNote(job_id, text):
                job = await self.runtime.jobs.note(job_id, text, caller)
                return Reply(
                    f"Job {texts.job_ref(job.id, job.name, self.fmt)} has a new note: {self.fmt.text(job.note)}",
                    job_id=job.id,
                )
            case ShowGpus():
                holders = leases.held(await self.store.holding())
                cluster = await self.sup.backend.cluster_gpus()
                if cluster is not None:
                    return Reply(render_gpu_nodes(cluster, self.fmt))
                return Reply(texts.gpu_table(self.runtime.probe.snapshot(), holders, self.fmt))
        raise AssertionError(command)

    async def listed(self, where: JobFilter, title: str) -> Reply:
        """The newest LIST_LIMIT jobs the filter holds, and how many it holds where there are more."""
        page = await self.store.page(where, limit=LIST_LIMIT)
        text = texts.job_list(page.jobs, title, self.fmt)
        if page.next is not None:
            total = await self.store.count(where)
            text += f"\n… the newest {LIST_LIMIT} of {texts.count_words(total)} (the web page lists them all)."
        return Reply(text)

    async def status_by_name(self, ref: str, *, id_shaped: bool = False) -> Reply:
        """`status <name>`: the job of that name (in any case), else the one job it finds; several: their list.
        `id_shaped`: `ref` could be a job id (none has it): found nothing, that is what is said."""
        found = (await self.store.page(JobFilter(text=ref), limit=LIST_LIMIT)).jobs
        named = [j for j in found if j.name.casefold() == ref.casefold()]
        if len(named) == 1 or len(found) == 1:
            job = (named or found)[0]
            return Reply(texts.job_status(job, self.fmt), job_id=job.id)
        if not found and id_shaped:
            return Reply(refusals.error_text(JobNotFound(ref), self.fmt), ok=False)
        if not found:
            return Reply(
                f"No job is named {self.fmt.code(ref)}, and no job's name, folder, owner or id holds it; "
                f"{self.fmt.code('list')} shows the jobs there are.",
                ok=False,
            )
        return await self.listed(JobFilter(text=ref), f"Jobs matching {self.fmt.code(ref)}")

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
            f"Job {texts.job_ref(job.id, job.name, fmt)} {texts.start_reply(job, fmt)}: {command.kind.upper()} on "
            f"{texts.gpus_label(job.gpus)}, output {fmt.code(job.output_dir)}",
            public=True,
            job_id=job.id,
            ok=job.state is not JobState.FAILED,
        )

    async def job_command(self, command: JobCommand, caller: Caller) -> Reply:
        if command.action == "status" and await self.store.get(command.job_id) is None:
            return await self.status_by_name(command.job_id, id_shaped=True)  # a name like `sweep`, or no job
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
        job = await self.store.get(command.job_id)
        ref = texts.job_ref(command.job_id, job.name if job is not None else None, self.fmt)
        what = (
            f"asking job {ref}'s model"
            if command.question
            else f"checking job {ref}'s model: who it says it is, fine-tuned and base"
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
