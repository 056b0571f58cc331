"""The supervisor: leases GPUs, starts queued jobs, follows their progress, stops, exports and settles them.

It never talks to people: each change it makes goes to the store together with the notice people must get
(an outbox row), and the front ends (console, Slack) deliver those. Everything here is idempotent per tick, so a
restarted bot simply carries on from what the store says (`recover`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from runner import leases, planner
from runner.backends import Backend, LaunchError, ProcessRef
from runner.command import SwiftCommand, build_export
from runner.config import Config
from runner.errors import (
    AlreadyExporting,
    AlreadySucceeded,
    CannotLaunch,
    ExportRunning,
    GpuMissing,
    NoCheckpoint,
    NotEnded,
    NothingToStop,
    NotRestartable,
    OutputInUse,
)
from runner.failures import classify_failure, with_cause
from runner.gpus import GpuProbe
from runner.planner import DIRECT_NOTE as DIRECT_NOTE
from runner.planner import DIRECT_RANKS_NOTE as DIRECT_RANKS_NOTE
from runner.planner import JobRequest as JobRequest
from runner.planner import Plan as Plan
from runner.planner import ProbedFacts, export_entry, probe_facts
from runner.progress import Milestone, MilestoneKind, ProgressTail, find_run_dir, read_final_summary
from runner.settle import Stopped, Succeeded, decide_outcome, ended_well
from storage.errors import StillActive
from storage.jobs import JobStore
from storage.models import ExportState, Job, JobState, Notice, Progress

log = logging.getLogger(__name__)



class Supervisor:
    def __init__(self, store: JobStore, config: Config, probe: GpuProbe, backend: Backend) -> None:
        self.store, self.config, self.probe, self.backend = store, config, probe, backend
        self._tails: dict[str, ProgressTail] = {}
        self._stop_started: dict[str, float] = {}
        self._lock = asyncio.Lock()  # one tick (or command) changes jobs at a time
        self._woken: asyncio.Task[bool] | None = None
        self._closed = False
        self.facts = ProbedFacts()  # until refresh_facts: the default swift version, no Liger

    # ---- what people ask for -------------------------------------------------------------------------------

    async def refresh_facts(self) -> None:
        """Probe swift (off the loop, cached until `swift.bin` changes) for plans; the runtime calls it at start."""
        self.facts = await probe_facts(self.config)

    def plan(self, req: JobRequest, *, resume_from: str | None = None) -> Plan:
        nvml = tuple(g for g in self.probe.snapshot().gpus if g.source == "nvml")
        made = planner.plan(req, self.config, replace(self.facts, gpus=nvml), resume_from=resume_from,
                            backend_name=self.backend.name)
        if not self.backend.schedules_gpus and (missing := self.probe.describe_missing(req.gpus)) is not None:
            made = replace(made, warnings=(str(missing),))  # on Slurm the nodes' GPUs count, not this machine's
        return made

    async def dry_run_warnings(self, req: JobRequest) -> list[str]:
        plan = self.plan(req)
        warnings = list(plan.warnings)
        if self.backend.schedules_gpus and (missing := await self._missing_gpus(req)) is not None:
            warnings.append(str(missing))
        holders = leases.held(await self.store.active())
        busy = [f"GPU {g} is held by job {holders[g]}" for g in req.gpus if g in holders]
        foreign = self.foreign_busy(await self.store.active())
        busy += [f"GPU {g} is busy with a process trainbot did not start" for g in req.gpus
                 if g in foreign and g not in holders]
        if busy:
            warnings.append("; ".join(busy) + ": the job would wait in the queue")
        return warnings

    async def _missing_gpus(self, req: JobRequest) -> GpuMissing | None:
        """Why the GPUs asked for cannot be had: this machine's (probe) or, on Slurm, a node's."""
        if self.backend.schedules_gpus:
            return await self.backend.describe_missing_gpus(req.gpus)
        return self.probe.describe_missing(req.gpus)

    async def submit(self, req: JobRequest, *, hold: bool = False, idempotency_key: str | None = None) -> Job:
        """Record a job and queue it (`hold`: record only, `created` until `start`). A job already made under
        `idempotency_key` is returned as it is, nothing new recorded."""
        if idempotency_key is not None and (first := await self.store.by_idempotency_key(idempotency_key)):
            return first
        if (missing := await self._missing_gpus(req)) is not None:
            raise missing
        plan = self.plan(req)
        async with self._lock:  # no second job may take the folder (or the key) between the check and the create
            if idempotency_key is not None and (first := await self.store.by_idempotency_key(idempotency_key)):
                return first
            await self._check_output_free(Path(req.output_dir), None)
            try:
                job = await self._create(req, plan, hold=hold, idempotency_key=idempotency_key)
            except sqlite3.IntegrityError:  # another process made the job under this key first: that is the job
                if idempotency_key is None or (first := await self.store.by_idempotency_key(idempotency_key)) is None:
                    raise
                return first
        if not hold:
            await self.tick()
        return await self.store.require(job.id)

    async def _create(self, req: JobRequest, plan: Plan, *, hold: bool, idempotency_key: str | None) -> Job:
        draft = Job(id="", kind=req.kind, state=JobState.CREATED if hold else JobState.QUEUED,
                    output_dir=str(req.output_dir), gpus=req.gpus, argv=plan.argv, env=plan.env,
                    recipe=str(req.kind), overrides=dict(req.overrides), backend=self.backend.name,
                    user_id=req.user_id, channel_id=req.channel_id, idempotency_key=idempotency_key)
        job = await self.store.create(draft, event=f"created by {req.user_id or 'console'}",
                                      notice=Notice("", "job_created", {"command": plan.display,
                                                                        "profile": req.profile,
                                                                        "profile_notes": list(plan.notes)}))
        return await self.store.update(job.id, log_path=str(self.log_path(job, "train")))

    async def _check_output_free(self, output_dir: Path, job_id: str | None) -> None:
        """Two active jobs never share an output folder: their checkpoints and logging.jsonl would mix."""
        for other in await self.store.active():
            theirs = Path(other.output_dir)
            if other.id != job_id and (theirs == output_dir or theirs.is_relative_to(output_dir)
                                       or output_dir.is_relative_to(theirs)):
                raise OutputInUse(theirs, other.id)

    async def start(self, job_id: str, *, by: str | None) -> Job:
        """`start <id>`: a created job joins the queue; an ended one goes back in line (`restart`)."""
        async with self._lock:
            job = await self.store.require(job_id)
            if job.state is JobState.CREATED:
                await self.store.update(job_id, state=JobState.QUEUED, expect=[JobState.CREATED],
                                        event=f"started by {by or 'console'}", event_kind="submitted",
                                        notice=Notice(job_id, "job_submitted", {"by": by}))
        if job.state is not JobState.CREATED:
            return await self.restart(job_id, by=by)
        await self.tick()
        return await self.store.require(job_id)

    async def restart(self, job_id: str, *, by: str | None) -> Job:
        """`start <id>`: an ended job goes back in line, resuming from its last checkpoint if it has one."""
        async with self._lock:
            job = await self.store.require(job_id)
            if job.state is JobState.SUCCEEDED:
                raise AlreadySucceeded(job_id, str(job.kind))
            if not job.state.is_terminal:
                raise NotRestartable(job_id, str(job.state))
            await self._check_output_free(Path(job.output_dir), job.id)
            resume = job.progress.last_checkpoint
            req = JobRequest(job.kind, job.gpus, Path(job.output_dir), job.overrides)
            plan = self.plan(req, resume_from=resume)
            note = f"resuming from {resume}" if resume else "from the start (no checkpoint yet)"
            await self.store.update(
                job_id, state=JobState.QUEUED, argv=plan.argv, env=plan.env, error_class=None, error_message=None,
                error_hint=None, exit_code=None, stopped_by=None, queue_reason=None, finished_at=None, pid=None,
                backend_job_id=None, proc_start_time=None,
                run_dir=None, event=f"started again by {by or 'console'}, {note}", event_kind="restarted",
                notice=Notice(job_id, "job_restarted", {"by": by, "resume_from": resume, "command": plan.display}),
            )
        await self.tick()
        return await self.store.require(job_id)

    async def stop(self, job_id: str, *, by: str | None) -> Job:
        async with self._lock:
            job = await self.store.require(job_id)
            if job.state is JobState.QUEUED:
                if job.backend_job_id is not None:
                    await self.backend.terminate(self._ref(job, "train"))  # leave the backend's queue too
                return await self.store.update(
                    job_id, state=JobState.STOPPED, stopped_by=by, finished_at=time.time(), queue_reason=None,
                    event=f"removed from the queue by {by or 'console'}",
                    notice=Notice(job_id, "job_stopped", {"by": by, "was_queued": True}))
            if job.state in (JobState.STARTING, JobState.RUNNING):
                self._stop_started[job_id] = time.monotonic()
                job = await self.store.update(job_id, state=JobState.STOPPING, stopped_by=by,
                                              event=f"stop requested by {by or 'console'}",
                                              notice=Notice(job_id, "job_stopping", {"by": by}))
                await self.backend.interrupt(self._ref(job, "train"))
                return job
            if job.state is JobState.STOPPING:
                return job
            if job.state is JobState.CREATED:
                raise NothingToStop(job_id, str(job.state))
            raise NothingToStop(job_id, str(job.state))

    async def export(self, job_id: str, *, by: str | None) -> Job:
        async with self._lock:
            job = await self.store.require(job_id)
            if job.state is JobState.CREATED:
                raise NotEnded(job_id, str(job.state))
            if not job.state.is_terminal:
                raise NotEnded(job_id, str(job.state))
            if job.export_state is ExportState.EXPORTING:
                raise AlreadyExporting(job_id)
            checkpoint = job.progress.last_checkpoint
            if not checkpoint or not Path(checkpoint).is_dir():
                raise NoCheckpoint(job_id)
            export_dir = Path(checkpoint).parent / f"{Path(checkpoint).name}-merged"
            cmd = build_export(checkpoint=checkpoint, export_dir=export_dir, config=self.config,
                               entry=export_entry(self.config, self.backend.name))
            log_path = self.log_path(job, "export")
            ref = ProcessRef(job_id, "export")
            try:
                launched = await self.backend.launch(ref, cmd, log_path=log_path, gpus=("cpu",))
            except LaunchError as exc:
                raise CannotLaunch(job_id, str(exc)) from exc
            return await self.store.update(
                job_id, export_state=ExportState.EXPORTING, export_dir=str(export_dir),
                export_log_path=str(log_path), export_pid=launched.pid,
                export_proc_start_time=launched.proc_start_time, export_backend_job_id=launched.backend_job_id,
                event=f"export started by {by or 'console'}: {cmd.display()}", event_kind="export_started",
                notice=Notice(job_id, "export_started", {"by": by, "checkpoint": checkpoint,
                                                         "command": cmd.display()}))

    async def delete(self, job_id: str, *, by: str | None) -> None:
        async with self._lock:
            job = await self.store.require(job_id)
            if job.export_state is ExportState.EXPORTING:
                raise ExportRunning(job_id)
            if job.state.is_active:
                raise StillActive(job_id, str(job.state))
            await self.store.delete(job_id, notice=Notice(job_id, "job_deleted", {"by": by,
                                                                                   "card_ts": job.card_ts,
                                                                                   "channel_id": job.channel_id}))
            self._tails.pop(job_id, None)

    def log_path(self, job: Job, purpose: str) -> Path:
        name = "training" if purpose == "train" else "export"
        return self.config.log_dir / f"{job.kind}_{name}_{job.id}.log"

    # ---- the loop ------------------------------------------------------------------------------------------

    async def recover(self) -> None:
        """On start: jobs caught mid-launch go back in line; the rest is what every tick does anyway."""
        for job in await self.store.list_jobs(states=[JobState.STARTING]):
            if job.pid is None:
                await self.store.update(job.id, state=JobState.QUEUED, event="back in line: the bot restarted "
                                        "before this job's launch", event_kind="requeued")
        for job in await self.store.list_jobs(states=[JobState.STOPPING]):
            self._stop_started.setdefault(job.id, time.monotonic())
        await self.tick()

    def wake(self) -> None:
        """Tick soon (a process ended): one extra tick at most, however many wake-ups arrive meanwhile."""
        if self._closed or (self._woken is not None and not self._woken.done()):
            return
        self._woken = asyncio.get_running_loop().create_task(self.tick())
        self._woken.add_done_callback(_log_failure)

    async def close(self) -> None:
        """No more ticks: wait for one under way, so nothing touches the store after it closes."""
        self._closed = True
        async with self._lock:
            if self._woken is not None:
                self._woken.cancel()

    async def tick(self) -> bool:
        """Follow every active job and export, start what may start; True when there is anything to follow."""
        async with self._lock:
            if self._closed:
                return False
            active = await self.store.active()
            for job in active:
                if job.state in leases.HOLDING_STATES or job.backend_job_id is not None:
                    try:
                        await self._follow(job)
                    except Exception:  # one job's trouble must not stop the others being followed
                        log.exception("following job %s failed", job.id)
            exporting = await self._follow_exports()
            if any(j.state is JobState.QUEUED for j in active):
                await self._start_queued()
            return bool(active) or exporting

    async def _start_queued(self) -> None:
        active = await self.store.active()
        queue = [j for j in active if j.state is JobState.QUEUED]
        if self.backend.schedules_gpus:  # Slurm picks the GPUs and keeps its own queue: hand every job over
            for job in queue:
                if job.backend_job_id is None:
                    await self._launch(job)
            return
        decisions = leases.plan_starts(queue, leases.held(active), self.foreign_busy(active))
        for d in decisions:
            if d.start:
                await self._launch(d.job)
            elif d.reason != d.job.queue_reason:
                first = d.job.queue_reason is None
                await self.store.update(
                    d.job.id, queue_reason=d.reason,
                    notice=Notice(d.job.id, "job_queued", {"reason": d.reason, "position": d.position})
                    if first else None)

    async def _launch(self, job: Job) -> None:
        scheduled = self.backend.schedules_gpus
        if not scheduled:
            job = await self.store.update(job.id, state=JobState.STARTING, expect=[JobState.QUEUED], queue_reason=None)
        ref = ProcessRef(job.id, "train")
        log_path = self.log_path(job, "train")
        handed_over = time.time()  # the trainer starts after this: no run folder of its can be older
        try:
            _check_writable(Path(job.output_dir))
            launched = await self.backend.launch(ref, SwiftCommand(job.argv, job.env), log_path=log_path,
                                                 gpus=job.gpus)
        except LaunchError as exc:
            ran = f" (the command: {exc.detail})" if exc.detail else ""
            await self.store.update(job.id, state=JobState.FAILED, error_class="launch", error_message=str(exc),
                                    error_hint=exc.hint, finished_at=time.time(), event=f"could not start: {exc}{ran}",
                                    notice=Notice(job.id, "job_failed", {"summary": str(exc), "hint": exc.hint,
                                                                         "class": "launch", "tail": []}))
            return
        job = await self.store.update(
            job.id, pid=launched.pid, proc_start_time=launched.proc_start_time, host=launched.host,
            backend_job_id=launched.backend_job_id, log_path=str(log_path),
            progress=job.progress if job.progress.last_checkpoint else Progress())
        if scheduled:  # the notice carries facts; each front end words them (and the place in line is Slurm's)
            status = await self.backend.status(self._ref(job, "train"))
            reason = f"submitted to {self.backend.name} as job {launched.backend_job_id}"
            await self.store.update(job.id, queue_reason=reason, event=reason, event_kind="submitted",
                                    notice=Notice(job.id, "job_queued", {
                                        "backend": self.backend.name, "backend_job_id": launched.backend_job_id,
                                        "pending_reason": status.pending_reason if status.alive else None}))
            return
        await self._mark_running(job, handed_over)

    async def _mark_running(self, job: Job, started_at: float | None = None) -> Job:
        """started_at: when the backend started it (Slurm's StartTime; local: when it was handed over), else now;
        it bounds which run folder is the job's, so it must not be later than the trainer's start."""
        if job.state is JobState.QUEUED:
            job = await self.store.update(job.id, state=JobState.STARTING, queue_reason=None)
        gpus = "CPU" if job.gpus == ("cpu",) else f"GPU {', '.join(job.gpus)}"
        return await self.store.update(
            job.id, state=JobState.RUNNING, started_at=started_at or time.time(),
            event=f"started on {job.host} ({gpus})", event_kind="started",
            notice=Notice(job.id, "job_started", {"command": _display(job), "host": job.host, "gpus": list(job.gpus)}))

    async def _follow(self, job: Job) -> None:
        ref = self._ref(job, "train")
        status = await self.backend.status(ref)
        if job.state is JobState.QUEUED:  # submitted to a scheduling backend
            if status.alive and status.pending_reason is not None:
                if status.pending_reason != job.queue_reason:
                    await self.store.update(job.id, queue_reason=status.pending_reason)
                return
            if status.alive or status.returncode == 0:  # it ran (a job refused before running never started)
                job = await self._mark_running(job, status.started_at)
        await self._read_progress(job, final=not status.alive)
        if status.alive:
            if job.state is JobState.STOPPING:
                await self._escalate_stop(job, ref)
            return
        await self._settle(await self.store.require(job.id), status.returncode, cause=status.detail)

    async def _read_progress(self, job: Job, *, final: bool) -> None:
        tail = self._tails.get(job.id)
        if tail is None:
            run_dir = Path(job.run_dir) if job.run_dir else find_run_dir(Path(job.output_dir), job.started_at)
            if run_dir is None:
                return
            tail = self._tails[job.id] = ProgressTail(run_dir, resume=job.progress)
            if job.run_dir is None:
                await self.store.update(job.id, run_dir=str(run_dir))
        milestones = tail.poll(final)  # a few stat() calls unless swift wrote something: not worth a thread
        if tail.progress != job.progress:
            await self.store.update(job.id, progress=tail.progress)
        for m in milestones:
            await self._record_milestone(job, m)

    async def _record_milestone(self, job: Job, m: Milestone) -> None:
        if m.kind is MilestoneKind.CHECKPOINT:
            await self.store.add_event(job.id, "checkpoint", f"checkpoint saved at step {m.step}", m.data,
                                       notice=Notice(job.id, "checkpoint", m.data))
        elif m.kind is MilestoneKind.EVAL:
            await self.store.add_event(job.id, "eval", f"eval at step {m.step}", m.data,
                                       notice=Notice(job.id, "eval", m.data))

    async def _escalate_stop(self, job: Job, ref: ProcessRef) -> None:
        waited = time.monotonic() - self._stop_started.setdefault(job.id, time.monotonic())
        if waited > self.config.stop_grace_s + self.config.term_grace_s:
            await self.backend.kill(ref)
        elif waited > self.config.stop_grace_s:
            await self.backend.terminate(ref)

    async def _settle(self, job: Job, returncode: int | None, *, cause: str | None = None) -> None:
        """The process is gone: decide how it ended, from its exit status, logging.jsonl and its log."""
        self._stop_started.pop(job.id, None)
        tail = self._tails.pop(job.id, None)
        progress = tail.progress if tail else job.progress
        if job.run_dir and progress.max_steps is None:
            progress = read_final_summary(Path(job.run_dir))
        now = time.time()
        duration = now - job.started_at if job.started_at else None
        common: dict[str, Any] = {"progress": progress, "exit_code": returncode, "finished_at": now}
        failure = None if ended_well(job, returncode, progress) else classify_failure(
            returncode, Path(job.log_path) if job.log_path else None, stop_requested=job.state is JobState.STOPPING)
        outcome = decide_outcome(job, returncode, progress, failure, cause)
        if isinstance(outcome, Succeeded):
            await self.store.update(job.id, state=JobState.SUCCEEDED, **common, event="finished", event_kind="finished",
                                    notice=Notice(job.id, "job_succeeded", _end_data(job, progress, duration)))
            return
        if isinstance(outcome, Stopped):
            by = outcome.by
            await self.store.update(job.id, state=JobState.STOPPED, stopped_by=by, **common,
                                    event=f"stopped by {by or 'console'}", event_kind="stopped",
                                    notice=Notice(job.id, "job_stopped", {**_end_data(job, progress, duration),
                                                                          "by": by}))
            return
        failure = outcome.failure
        await self.store.update(
            job.id, state=JobState.FAILED, error_class=str(failure.cls), error_message=failure.summary,
            error_hint=failure.hint, **common, event=f"failed: {failure.summary}", event_kind="failed",
            notice=Notice(job.id, "job_failed", {**_end_data(job, progress, duration), "class": str(failure.cls),
                                                 "summary": failure.summary, "hint": failure.hint,
                                                 "detail": failure.detail, "tail": failure.tail}))

    async def _follow_exports(self) -> bool:
        exporting = await self.store.exporting()
        for job in exporting:
            ref = self._ref(job, "export")
            status = await self.backend.status(ref)
            if status.alive:
                continue
            export_dir = Path(job.export_dir or "")
            if status.returncode == 0 and export_dir.is_dir():
                await self.store.update(job.id, export_state=ExportState.EXPORTED, export_pid=None,
                                        event=f"exported to {export_dir}", event_kind="exported",
                                        notice=Notice(job.id, "export_succeeded", {"export_dir": str(export_dir)}))
            else:
                f = classify_failure(status.returncode, Path(job.export_log_path) if job.export_log_path else None)
                f = with_cause(f, status.detail) if status.detail else f
                await self.store.update(job.id, export_state=ExportState.EXPORT_FAILED, export_pid=None,
                                        event=f"export failed: {f.summary}", event_kind="export_failed",
                                        notice=Notice(job.id, "export_failed", {"summary": f.summary, "hint": f.hint,
                                                                                "tail": f.tail}))
        return bool(exporting)

    # ---- helpers -------------------------------------------------------------------------------------------

    def foreign_busy(self, active: list[Job]) -> set[str]:
        """GPUs with processes that are not ours (ours: every process of our jobs, found from their pids)."""
        refs = [self._ref(j, "train") for j in active if j.pid is not None]
        return self.probe.foreign_busy(self.backend.own_pids(refs) | {os.getpid()})

    def _ref(self, job: Job, purpose: str) -> ProcessRef:
        if purpose == "export":
            return ProcessRef(job.id, "export", job.export_pid, job.export_proc_start_time, job.export_backend_job_id)
        return ProcessRef(job.id, "train", job.pid, job.proc_start_time, job.backend_job_id)


def _log_failure(task: asyncio.Task[bool]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("supervisor tick failed", exc_info=task.exception())


def _check_writable(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LaunchError(f"cannot create the output folder {output_dir}: {exc.strerror}") from exc
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise LaunchError(f"the output folder {output_dir} is not writable by the bot's user")


def _display(job: Job) -> str:
    return SwiftCommand(job.argv, job.env).display()


def _end_data(job: Job, progress: Progress, duration: float | None) -> dict[str, object]:
    return {"duration_s": duration, "final_loss": progress.train_loss or progress.loss, "step": progress.step,
            "max_steps": progress.max_steps, "last_checkpoint": progress.last_checkpoint,
            "run_dir": job.run_dir, "output_dir": job.output_dir}
