"""Following jobs: start what may start, read progress, escalate stops, settle ended runs and exports.

The supervisor's tick calls this under its lock, once per active job; everything here is idempotent, so a
restarted bot carries on from what the store says. Each change goes to the store with its notice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any

from runner import admission
from runner.backends import Backend, Launched, LaunchError, NotKnownYet, ProcessRef, new_launch_token
from runner.command import SwiftCommand, build_export
from runner.config import Config
from runner.errors import OutputInUse, launch_refusal
from runner.failures import classify_failure, with_cause
from runner.gpus import GpuProbe
from runner.levers import not_applied
from runner.paths import OutsideRoot
from runner.planner import export_entry
from runner.progress import Milestone, MilestoneKind, ProgressTail, read_final_summary
from runner.run_files import find_run_dir
from runner.settle import Stopped, Succeeded, decide_outcome, ended_well
from storage.actors import actor_name
from storage.actors import event_data as by_data
from storage.failure_facts import JobFailure, OutputUnwritable, SchedulerEnded
from storage.failure_facts import event_data as failure_data
from storage.jobs import JobStore
from storage.models import ExportState, Job, JobState, Progress, Purpose, Run
from storage.notices import (
    CheckpointSaved,
    EvalDone,
    ExportFailed,
    ExportStarted,
    ExportSucceeded,
    JobFailed,
    JobQueued,
    JobStarted,
    JobStopped,
    JobSucceeded,
    NotApplied,
    Notice,
)
from storage.waiting import Submitted

log = logging.getLogger(__name__)


class Follower:
    def __init__(self, store: JobStore, config: Config, probe: GpuProbe, backend: Backend) -> None:
        self.store, self.config, self.probe, self.backend = store, config, probe, backend
        self._tails: dict[str, ProgressTail] = {}
        self._stop_started: dict[str, float] = {}
        self._unreached: set[str] = set()  # stopping jobs whose trainer the SIGINT has not reached yet
        self.launching_exports: set[str] = set()  # submitted outside the lock: no process to follow yet

    def stop_requested(self, job_id: str) -> None:
        """The stop clock starts now (unless it already runs): interrupt, then terminate, then kill."""
        self._stop_started.setdefault(job_id, time.monotonic())

    async def interrupt(self, job: Job) -> None:
        """SIGINT to the job's trainer. One not started yet (its launcher, loaded, starting it) gets it at a later
        look, until the grace period ends: a stop typed in the job's first second is not lost."""
        if await self.backend.interrupt(ProcessRef.of(job, "train")):
            self._unreached.discard(job.id)
        else:
            self._unreached.add(job.id)

    def forget(self, job_id: str) -> None:
        self._tails.pop(job_id, None)
        self._stop_started.pop(job_id, None)
        self._unreached.discard(job_id)

    def log_path(self, job: Job, purpose: Purpose) -> Path:
        name = "training" if purpose == "train" else "export"
        return self.config.log_dir / f"{job.kind}_{name}_{job.id}.log"

    async def follow(self, job: Job) -> None:
        """One active job: its process's state, progress and milestones; settle it once its process is gone."""
        if job.train_run.in_doubt:
            await self.resolve_launch(job, "train")
            return
        ref = ProcessRef.of(job, "train")
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
        await self._settle(await self.store.require(job.id), status.returncode, cause=status.cause)

    async def start_queued(self) -> None:
        holding = await self.store.holding()
        queue = [j for j in holding if j.state is JobState.QUEUED]
        if self.backend.schedules_gpus:  # Slurm picks the GPUs and keeps its own queue: hand every job over
            for job in queue:
                if job.train_run.backend_job_id is None and not job.train_run.in_doubt:
                    await self._launch(job)
            return
        for d in admission.line(await self.store.line(), holding, self.foreign_busy(holding)):
            if d.purpose != "train":
                continue  # a try session in the same line: runner/trying.py starts it
            if d.start:
                await self._launch(d.job)
            elif d.reason != d.job.queue_reason:
                first = d.job.queue_reason is None
                await self.store.update(
                    d.job.id,
                    queue_reason=d.reason,
                    notice=Notice(d.job.id, JobQueued(reason=d.reason, position=d.position)) if first else None,
                )

    async def _launch(self, job: Job) -> None:
        scheduled = self.backend.schedules_gpus
        log_path = self.log_path(job, "train")
        begun = Run(log_path=str(log_path), launch_token=new_launch_token())  # in the store before anything starts
        if not scheduled:
            job = await self.store.update(
                job.id, state=JobState.STARTING, expect=[JobState.QUEUED], queue_reason=None, train_run=begun
            )
        else:
            job = await self.store.update(job.id, train_run=begun)
        ref = ProcessRef.of(job, "train")
        handed_over = time.time()  # the trainer starts after this: no run folder of its can be older
        holding = await self.store.holding()
        try:
            _admitted(self.config, job, holding, log_path)  # before anything is made on disk or started
            _check_writable(Path(job.output_dir))
            launched = await self.backend.launch(ref, SwiftCommand(job.argv, job.env), log_path=log_path, gpus=job.gpus)
        except LaunchError as exc:
            ran = f" (the command: {exc.detail})" if exc.detail else ""
            failed = JobFailure(exc.refusal)
            await self.store.update(
                job.id,
                state=JobState.FAILED,
                failure=failed,
                finished_at=time.time(),
                event=f"could not start: {exc.refusal.code}{ran}",
                event_data=failure_data(failed) | ({"command": exc.detail} if exc.detail else {}),
                notice=Notice(job.id, JobFailed(failure=failed)),
            )
            return
        await self._record_launch(job, launched, handed_over)

    async def _record_launch(self, job: Job, launched: Launched, started_at: float | None) -> None:
        """What a launch started (or, after a restart, what it had started, found again), then the job's next state;
        started_at: no later than the trainer's start (see _mark_running)."""
        scheduled = self.backend.schedules_gpus
        job = await self.store.update(
            job.id,
            train_run=launched.run(self.log_path(job, "train"), job.train_run.launch_token),
            host=launched.host,
            progress=job.progress if job.progress.last_checkpoint else Progress(),
        )
        if scheduled:  # the notice carries facts; each front end words them (and the place in line is Slurm's)
            status = await self.backend.status(ProcessRef.of(job, "train"))
            reason = f"submitted to {self.backend.name} as job {launched.backend_job_id}"
            submitted = Submitted(self.backend.name, launched.backend_job_id or "")
            await self.store.update(
                job.id,
                queue_reason=submitted,
                event=reason,
                event_kind="submitted",
                notice=Notice(
                    job.id,
                    JobQueued(
                        backend=self.backend.name,
                        backend_job_id=launched.backend_job_id,
                        pending_reason=status.pending_reason if status.alive else None,
                    ),
                ),
            )
            return
        if job.state is JobState.STARTING:
            await self._mark_running(job, started_at)
        elif job.state is JobState.STOPPING:  # stopped while the launch was in doubt: the stop reaches it now
            await self.interrupt(job)

    async def _mark_running(self, job: Job, started_at: float | None = None) -> Job:
        """started_at: when the backend started it (Slurm's StartTime; local: when it was handed over), else now;
        it bounds which run folder is the job's, so it must not be later than the trainer's start."""
        if job.state is JobState.QUEUED:
            job = await self.store.update(job.id, state=JobState.STARTING, queue_reason=None)
        gpus = "CPU" if job.gpus == ("cpu",) else f"GPU {', '.join(job.gpus)}"
        return await self.store.update(
            job.id,
            state=JobState.RUNNING,
            started_at=started_at or time.time(),
            event=f"started on {job.host} ({gpus})",
            event_kind="started",
            notice=Notice(job.id, JobStarted(command=_display(job), host=job.host, gpus=job.gpus)),
        )

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
            await self.store.add_event(
                job.id,
                "checkpoint",
                f"checkpoint saved at step {m.step}",
                m.data,
                notice=Notice(job.id, CheckpointSaved(step=m.step, path=m.data.get("path"))),
            )
        elif m.kind is MilestoneKind.EVAL:
            await self.store.add_event(
                job.id, "eval", f"eval at step {m.step}", m.data, notice=Notice(job.id, _eval_facts(m))
            )

    async def _escalate_stop(self, job: Job, ref: ProcessRef) -> None:
        waited = time.monotonic() - self._stop_started.setdefault(job.id, time.monotonic())
        if waited > self.config.stop_grace_s + self.config.term_grace_s:
            await self.backend.kill(ref)
        elif waited > self.config.stop_grace_s:
            await self.backend.terminate(ref)
        elif job.id in self._unreached:
            await self.interrupt(job)

    async def _settle(self, job: Job, returncode: int | None, *, cause: SchedulerEnded | None = None) -> None:
        """The process is gone: decide how it ended, from its exit status, logging.jsonl and its log."""
        self._stop_started.pop(job.id, None)
        self._unreached.discard(job.id)
        tail = self._tails.pop(job.id, None)
        progress = tail.progress if tail else job.progress
        if job.run_dir and progress.max_steps is None:
            progress = read_final_summary(Path(job.run_dir))
        now = time.time()
        duration = now - job.started_at if job.started_at else None
        levers = await asyncio.to_thread(not_applied, job.train_run.log)
        common: dict[str, Any] = {"progress": progress, "exit_code": returncode, "finished_at": now}
        failure = (
            None
            if ended_well(job, returncode, progress)
            else classify_failure(returncode, job.train_run.log, stop_requested=job.state is JobState.STOPPING)
        )
        outcome = decide_outcome(job, returncode, progress, failure, cause)
        if isinstance(outcome, Succeeded):
            await self.store.update(
                job.id,
                state=JobState.SUCCEEDED,
                **common,
                event="finished",
                event_kind="finished",
                notice=Notice(job.id, JobSucceeded(**_run_end(job, progress, duration, levers))),
            )
            return
        if isinstance(outcome, Stopped):
            by = outcome.by
            await self.store.update(
                job.id,
                state=JobState.STOPPED,
                stopped_by=by,
                **common,
                event=f"stopped by {actor_name(by)}",
                event_kind="stopped",
                event_data=by_data(by),
                notice=Notice(job.id, JobStopped(**_run_end(job, progress, duration, levers), by=by)),
            )
            return
        failure = outcome.failure
        await self.store.update(
            job.id,
            state=JobState.FAILED,
            failure=failure.facts,
            **common,
            event=f"failed: {failure.reason.code}",
            event_kind="failed",
            event_data=failure_data(failure.facts),
            notice=Notice(
                job.id,
                JobFailed(
                    **_run_end(job, progress, duration, levers),
                    failure=failure.facts,
                    detail=failure.detail,
                    tail=tuple(failure.tail),
                ),
            ),
        )

    async def follow_exports(self) -> bool:
        exporting = await self.store.exporting()
        for job in exporting:
            if job.id in self.launching_exports:
                continue
            if job.export_run.in_doubt:
                await self.resolve_launch(job, "export")
                continue
            status = await self.backend.status(ProcessRef.of(job, "export"))
            if status.alive:
                continue
            export_dir = Path(job.export_dir or "")
            ended = dataclasses.replace(job.export_run, pid=None)  # no process of its left to signal
            levers = await asyncio.to_thread(not_applied, job.export_run.log)
            if status.returncode == 0 and export_dir.is_dir():
                await self.store.update(
                    job.id,
                    export_state=ExportState.EXPORTED,
                    export_run=ended,
                    event=f"exported to {export_dir}",
                    event_kind="exported",
                    notice=Notice(job.id, ExportSucceeded(export_dir=str(export_dir), not_applied=levers)),
                )
            else:
                f = classify_failure(status.returncode, job.export_run.log)
                f = with_cause(f, status.cause) if status.cause else f
                await self.store.update(
                    job.id,
                    export_state=ExportState.EXPORT_FAILED,
                    export_run=ended,
                    event=f"export failed: {f.reason.code}",
                    event_kind="export_failed",
                    event_data=failure_data(f.facts),
                    notice=Notice(job.id, ExportFailed(failure=f.facts, tail=tuple(f.tail), not_applied=levers)),
                )
        return bool(exporting)

    async def resolve_launch(self, job: Job, purpose: Purpose) -> None:
        """A launch begun (its token in the store) but not seen through: the bot stopped in between. What it started
        is followed from now on; where the backend knows for certain that nothing started (nor will: a launcher
        that comes late finds its launch given up), the job goes back in line and an export is handed over again.
        Either way nothing runs twice."""
        try:
            found = await self.backend.reclaim(ProcessRef.of(job, purpose))
        except NotKnownYet as exc:
            log.warning("job %s: whether its %s started is not known yet: %s", job.id, purpose, exc)
            return
        if purpose == "export":
            await (self._export_found(job, found) if found is not None else self._export_again(job))
        elif found is not None:
            await self._record_launch(job, found, found.proc_start_time)
        elif job.state is JobState.STOPPING:  # stopped before it ever started
            await self._settle(job, None)
        else:
            await self.store.update(
                job.id,
                state=JobState.QUEUED,
                train_run=Run(log_path=job.train_run.log_path),
                event="back in line: the bot restarted before this job's launch",
                event_kind="requeued",
            )

    async def _export_found(self, job: Job, found: Launched) -> None:
        await self.store.update(
            job.id,
            export_run=found.run(self.log_path(job, "export"), job.export_run.launch_token),
            event="export found again after a restart of the bot",
            event_kind="reattached",
        )

    async def _export_again(self, job: Job) -> None:
        """An export whose process never started: handed over again, as `export` had asked."""
        cmd = build_export(
            checkpoint=job.progress.last_checkpoint or "",
            export_dir=Path(job.export_dir or ""),
            config=self.config,
            entry=export_entry(self.config, self.backend.name),
        )
        log_path = self.log_path(job, "export")
        job = await self.store.update(job.id, export_run=Run(log_path=str(log_path), launch_token=new_launch_token()))
        gpus = job.export_gpus
        try:
            launched = await self.backend.launch(
                ProcessRef.of(job, "export"), cmd, log_path=log_path, gpus=gpus or ("cpu",)
            )
        except LaunchError as exc:
            failed = JobFailure(exc.refusal)
            await self.store.update(
                job.id,
                export_state=ExportState.EXPORT_FAILED,
                event=f"export could not start: {exc.refusal.code}",
                event_kind="export_failed",
                event_data=failure_data(failed),
                notice=Notice(job.id, ExportFailed(failure=failed)),
            )
            return
        await self.store.update(
            job.id,
            export_run=launched.run(log_path, job.export_run.launch_token),
            event=f"export started again after a restart of the bot: {cmd.display()}",
            event_kind="export_started",
            notice=Notice(
                job.id, ExportStarted(checkpoint=job.progress.last_checkpoint, command=cmd.display(), gpus=gpus)
            ),
        )

    def foreign_busy(self, jobs: list[Job]) -> set[str]:
        """GPUs with processes that are not ours (ours: every process of these jobs' trainings and exports under
        way, found from their pids)."""
        refs = [ProcessRef.of(j, "train") for j in jobs if j.train_run.pid is not None]
        refs += [
            ProcessRef.of(j, "export")
            for j in jobs
            if j.export_state is ExportState.EXPORTING and j.export_run.pid is not None
        ]
        refs += [ProcessRef.of(j, "try") for j in jobs if j.try_state.holds and j.try_run.pid is not None]
        return self.probe.foreign_busy(self.backend.own_pids(refs) | {os.getpid()})


def _admitted(config: Config, job: Job, holding: list[Job], log_path: Path) -> None:
    """runner/admission's refusal as a launch failure: the job fails before any process starts, the path named."""
    try:
        admission.admit_launch(config, job, holding, log_path)
    except (OutputInUse, OutsideRoot) as exc:
        raise LaunchError(launch_refusal(exc)) from exc


def _check_writable(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LaunchError(OutputUnwritable(str(output_dir), exc.strerror, created=False)) from exc
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise LaunchError(OutputUnwritable(str(output_dir)))


def _display(job: Job) -> str:
    return SwiftCommand(job.argv, job.env).display()


def _run_end(job: Job, progress: Progress, duration: float | None, levers: tuple[NotApplied, ...]) -> dict[str, Any]:
    """The facts every end of a run tells (the fields of `RunEnd`)."""
    return {
        "duration_s": duration,
        "final_loss": progress.train_loss or progress.loss,
        "step": progress.step,
        "max_steps": progress.max_steps,
        "last_checkpoint": progress.last_checkpoint,
        "run_dir": job.run_dir,
        "output_dir": job.output_dir,
        "not_applied": levers,
    }


def _eval_facts(m: Milestone) -> EvalDone:
    metrics = {k: float(v) for k, v in m.data.items() if k.startswith("eval_") and isinstance(v, int | float)}
    epoch = m.data.get("epoch")
    return EvalDone(step=m.step, epoch=epoch if isinstance(epoch, float) else None, metrics=metrics)
