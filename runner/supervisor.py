"""The supervisor: what people ask of jobs (submit, start, stop, export, delete), and the tick that follows them.

Each tick, under one lock with the commands, hands every active job to runner/following.py (progress, stops,
settling ended runs and exports) and starts what may start. It never talks to people: each change goes to the
store together with the notice people must get (an outbox row), and the front ends deliver those. Everything is
idempotent per tick, so a restarted bot simply carries on from what the store says (`recover`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from runner import admission, leases, planner
from runner.backends import Backend, LaunchError, ProcessRef, new_launch_token
from runner.command import build_export
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
)
from runner.following import Follower
from runner.gpus import GpuProbe
from runner.job_request import JobRequest as JobRequest
from runner.job_request import check_request, fingerprint, made_under
from runner.planner import DIRECT_NOTE as DIRECT_NOTE
from runner.planner import DIRECT_RANKS_NOTE as DIRECT_RANKS_NOTE
from runner.planner import Plan as Plan
from runner.planner import ProbedFacts, export_entry, probe_facts
from storage import profile_notes
from storage.actors import actor
from storage.errors import StillActive
from storage.failure_facts import JobFailure
from storage.failure_facts import event_data as failure_data
from storage.jobs import JobStore
from storage.models import ExportState, Job, JobState, Purpose, Run, TryState
from storage.notices import (
    ExportStarted,
    JobCreated,
    JobDeleted,
    JobQueued,
    JobRestarted,
    JobSubmitted,
    LeftQueue,
    Notice,
    StopRequested,
)

log = logging.getLogger(__name__)


class Supervisor:
    def __init__(self, store: JobStore, config: Config, probe: GpuProbe, backend: Backend) -> None:
        self.store, self.config, self.probe, self.backend = store, config, probe, backend
        self.follower = Follower(store, config, probe, backend)
        self._lock = asyncio.Lock()  # one tick (or command) changes jobs at a time
        self._woken: asyncio.Task[bool] | None = None
        self._closed = False
        self.facts = ProbedFacts()  # until refresh_facts: the default swift version, no Liger
        self.end_try: Callable[[str], Awaitable[None]] | None = None  # runner/trying.py: a deleted job's session

    @property
    def lock(self) -> asyncio.Lock:
        """Held while jobs change (a tick, a command): runner/trying.py leases GPUs for tries under it too."""
        return self._lock

    # ---- what people ask for -------------------------------------------------------------------------------

    async def refresh_facts(self) -> None:
        """Probe swift (off the loop, cached until `swift.bin` changes) for plans; the runtime calls it at start."""
        self.facts = await probe_facts(self.config)

    def plan(self, req: JobRequest, *, resume_from: str | None = None) -> Plan:
        nvml = tuple(g for g in self.probe.snapshot().gpus if g.source == "nvml")
        made = planner.plan(
            req, self.config, replace(self.facts, gpus=nvml), resume_from=resume_from, backend_name=self.backend.name
        )
        if not self.backend.schedules_gpus and (missing := self.probe.describe_missing(req.gpus)) is not None:
            made = replace(made, warnings=(missing,))  # on Slurm the nodes' GPUs count, not this machine's
        return made

    async def dry_run_warnings(self, req: JobRequest) -> list[GpuMissing | leases.GpusBusy]:
        """What would keep the job from starting at once: GPUs missing, or in use (it would wait in the queue)."""
        plan = self.plan(req)
        warnings: list[GpuMissing | leases.GpusBusy] = list(plan.warnings)
        if self.backend.schedules_gpus and (missing := await self._missing_gpus(req)) is not None:
            warnings.append(missing)
        holding = await self.store.holding()
        holders, foreign = leases.held(holding), self.foreign_busy(holding)
        busy = leases.GpusBusy(
            {g: holders[g] for g in req.gpus if g in holders},
            tuple(g for g in req.gpus if g in foreign and g not in holders),
        )
        if busy.held or busy.foreign:
            warnings.append(busy)
        return warnings

    async def _missing_gpus(self, req: JobRequest) -> GpuMissing | None:
        """Why the GPUs asked for cannot be had: this machine's (probe) or, on Slurm, a node's."""
        if self.backend.schedules_gpus:
            return await self.backend.describe_missing_gpus(req.gpus)
        return self.probe.describe_missing(req.gpus)

    async def submit(self, req: JobRequest, *, idempotency_key: str | None = None) -> Job:
        """Check a request (runner/job_request.py), record its job and queue it (`req.hold`: record only, `created`
        until `start`). A job already made under `idempotency_key` from the same request is returned as it is,
        nothing new recorded; from another request, IdempotencyKeyReused."""
        req = check_request(req, self.config)
        if idempotency_key is not None and (first := await made_under(self.store, idempotency_key, req)):
            return first
        if (missing := await self._missing_gpus(req)) is not None:
            raise missing
        plan = self.plan(req)
        async with self._lock:  # no second job may take the folder (or the key) between the check and the create
            if idempotency_key is not None and (first := await made_under(self.store, idempotency_key, req)):
                return first
            admission.admit(self.config, None, Path(req.output_dir), req.overrides, await self.store.holding())
            try:
                job = await self._create(req, plan, idempotency_key=idempotency_key)
            except sqlite3.IntegrityError:  # another process made the job under this key first: that is the job
                if idempotency_key is None or (first := await made_under(self.store, idempotency_key, req)) is None:
                    raise
                return first
        if not req.hold:
            await self.tick()
        return await self.store.require(job.id)

    async def _create(self, req: JobRequest, plan: Plan, *, idempotency_key: str | None) -> Job:
        draft = Job(
            id="",
            kind=req.kind,
            state=JobState.CREATED if req.hold else JobState.QUEUED,
            output_dir=str(req.output_dir),
            gpus=req.gpus,
            argv=plan.argv,
            env=plan.env,
            overrides=dict(req.overrides),
            name=req.name or "",
            backend=self.backend.name,
            user_id=req.user_id,
            slack_channel=req.channel_id,
            idempotency_key=idempotency_key,
            idempotency_fingerprint=fingerprint(req) if idempotency_key is not None else None,
        )
        job = await self.store.create(
            draft,
            event=f"created by {req.user_id or 'console'}",
            event_data=profile_notes.event_data(plan.notes) or None,
            notice=Notice("", JobCreated(command=plan.display, profile=req.profile, profile_notes=tuple(plan.notes))),
        )
        return await self.store.update(job.id, train_run=Run(log_path=str(self.log_path(job, "train"))))

    async def _admit(self, job: Job) -> None:
        """May this recorded job join the line (runner/admission): its paths, its folder free."""
        admission.admit(self.config, job.id, Path(job.output_dir), job.overrides, await self.store.holding())

    async def start(self, job_id: str, *, by: str | None) -> Job:
        """`start <id>`: a created job joins the queue; an ended one goes back in line (`restart`)."""
        async with self._lock:
            job = await self.store.require(job_id)
            if job.state is JobState.CREATED:
                await self._admit(job)
                await self.store.update(
                    job_id,
                    state=JobState.QUEUED,
                    expect=[JobState.CREATED],
                    event=f"started by {by or 'console'}",
                    event_kind="submitted",
                    notice=Notice(job_id, JobSubmitted(by=by)),
                )
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
            await self._admit(job)
            resume = job.progress.last_checkpoint
            req = JobRequest(job.kind, job.gpus, Path(job.output_dir), job.overrides)
            plan = self.plan(req, resume_from=resume)
            note = f"resuming from {resume}" if resume else "from the start (no checkpoint yet)"
            await self.store.update(
                job_id,
                state=JobState.QUEUED,
                argv=plan.argv,
                env=plan.env,
                failure=None,
                exit_code=None,
                stopped_by=None,
                queue_reason=None,
                finished_at=None,
                train_run=Run(log_path=job.train_run.log_path),  # a new run, appending to the same log
                run_dir=None,
                event=f"started again by {by or 'console'}, {note}",
                event_kind="restarted",
                notice=Notice(job_id, JobRestarted(by=by, resume_from=resume, command=plan.display)),
            )
        await self.tick()
        return await self.store.require(job_id)

    async def stop(self, job_id: str, *, by: str | None) -> Job:
        async with self._lock:
            job = await self.store.require(job_id)
            if job.state is JobState.QUEUED and job.train_run.in_doubt:  # submitted before a restart? find it first
                await self.follower.resolve_launch(job, "train")
                job = await self.store.require(job_id)
            if job.state is JobState.QUEUED:
                if job.train_run.backend_job_id is not None:
                    await self.backend.terminate(ProcessRef.of(job, "train"))  # leave the backend's queue too
                return await self.store.update(
                    job_id,
                    state=JobState.STOPPED,
                    stopped_by=actor(by),
                    finished_at=time.time(),
                    queue_reason=None,
                    event=f"removed from the queue by {by or 'console'}",
                    notice=Notice(job_id, LeftQueue(by=by)),
                )
            if job.state in (JobState.STARTING, JobState.RUNNING):
                self.follower.stop_requested(job_id)
                job = await self.store.update(
                    job_id,
                    state=JobState.STOPPING,
                    stopped_by=actor(by),
                    event=f"stop requested by {by or 'console'}",
                    notice=Notice(job_id, StopRequested(by=by)),
                )
                await self.follower.interrupt(job)
                return job
            if job.state is JobState.STOPPING:
                return job
            raise NothingToStop(job_id, str(job.state))

    async def export(self, job_id: str, *, by: str | None) -> Job:
        """Merge the last checkpoint into a model. The export is marked under the lock and handed to the backend
        outside it: a slow `sbatch` holds up no tick and no other command meanwhile."""
        async with self._lock:
            job = await self.store.require(job_id)
            if not job.state.is_terminal:
                raise NotEnded(job_id, str(job.state))
            if job.export_state is ExportState.EXPORTING:
                raise AlreadyExporting(job_id)
            checkpoint = job.progress.last_checkpoint
            if not checkpoint or not Path(checkpoint).is_dir():
                raise NoCheckpoint(job_id)
            export_dir = Path(checkpoint).parent / f"{Path(checkpoint).name}-merged"
            cmd = build_export(
                checkpoint=checkpoint,
                export_dir=export_dir,
                config=self.config,
                entry=export_entry(self.config, self.backend.name),
            )
            log_path = self.log_path(job, "export")
            admission.admit_export(self.config, job, export_dir, await self.store.holding(), log_path)
            gpus = await self._export_gpus(job)
            job = await self.store.update(
                job_id,
                export_state=ExportState.EXPORTING,
                export_dir=str(export_dir),
                export_gpus=gpus,
                export_run=Run(log_path=str(log_path), launch_token=new_launch_token()),
            )
            self.follower.launching_exports.add(job_id)
        try:
            launched = await self.backend.launch(
                ProcessRef.of(job, "export"), cmd, log_path=log_path, gpus=gpus or ("cpu",)
            )
        except LaunchError as exc:
            async with self._lock:
                self.follower.launching_exports.discard(job_id)
                await self.store.update(
                    job_id,
                    export_state=ExportState.EXPORT_FAILED,
                    event=f"export could not start: {exc.refusal.code}",
                    event_kind="export_failed",
                    event_data=failure_data(JobFailure(exc.refusal)),
                )
            raise CannotLaunch(job_id, exc.refusal) from exc
        async with self._lock:
            self.follower.launching_exports.discard(job_id)
            return await self.store.update(
                job_id,
                export_run=launched.run(log_path, job.export_run.launch_token),
                event=f"export started by {by or 'console'} on {f'GPU {gpus[0]}' if gpus else 'the CPU'}: "
                f"{cmd.display()}",
                event_kind="export_started",
                notice=Notice(job_id, ExportStarted(by=by, checkpoint=checkpoint, command=cmd.display(), gpus=gpus)),
            )

    async def _export_gpus(self, job: Job) -> tuple[str, ...]:
        """The GPU the export may hold (leases.export_gpus), or none: the CPU. On Slurm always the CPU: a GPU there
        would be one more allocation to wait for, for a few seconds of work. The GPUs are looked at afresh: the
        last look may still show the job's own trainer, which has just ended, as another's process."""
        if self.backend.schedules_gpus:
            return ()
        snapshot = await asyncio.to_thread(self.probe.refresh)
        holding = await self.store.holding()
        here = [g.index for g in snapshot.gpus]
        return leases.export_gpus(
            job,
            here,
            leases.held(holding),
            self.foreign_busy(holding),
            [j for j in holding if j.state is JobState.QUEUED],
        )

    async def delete(self, job_id: str, *, by: str | None) -> None:
        """Forget a job that is not under way (its files stay): a created or queued one leaves the line (one in
        Slurm's queue is cancelled there first) and the jobs behind it are told their new place."""
        async with self._lock:
            job = await self.store.require(job_id)
            if job.export_state is ExportState.EXPORTING:
                raise ExportRunning(job_id)
            if job.state.is_under_way:
                raise StillActive(job_id, str(job.state))
            if job.try_state is not TryState.NONE and self.end_try is not None:
                await self.end_try(job_id)  # its lease goes with the job's row: its process first
            queued = job.state is JobState.QUEUED
            before = await self._line() if queued else []
            if queued and job.train_run.backend_job_id is not None:
                await self.backend.terminate(ProcessRef.of(job, "train"))  # Slurm refusing raises: nothing is forgotten
            await self.store.delete(job_id, notice=Notice(job_id, JobDeleted(by=by, name=job.name)))
            self.follower.forget(job_id)
            for d in admission.moved_up(before, await self._line()):
                if d.purpose != "train":
                    continue  # a waiting try hears of its place from its own wait (runner/trying.py)
                await self.store.update(
                    d.job.id,
                    queue_reason=d.reason,
                    notice=Notice(d.job.id, JobQueued(reason=d.reason, position=d.position, moved_up=True)),
                )
        if queued:
            await self.tick()  # the line moved: the job behind it may start now

    async def _line(self) -> list[leases.Decision]:
        """Our line for this machine's GPUs (Slurm keeps its own): who starts, each waiting job's place."""
        if self.backend.schedules_gpus:
            return []
        holding = await self.store.holding()
        return admission.line(await self.store.line(), holding, self.foreign_busy(holding))

    # ---- the loop ------------------------------------------------------------------------------------------

    async def recover(self) -> None:
        """On start: what every tick does anyway, launches caught midway included (Follower.resolve_launch); only a
        launch recorded before launch tokens, which nothing can find again, goes back in line as it is."""
        for job in await self.store.list_jobs(states=[JobState.STARTING]):
            if job.train_run.pid is None and job.train_run.launch_token is None:
                await self.store.update(
                    job.id,
                    state=JobState.QUEUED,
                    event="back in line: the bot restarted before this job's launch",
                    event_kind="requeued",
                )
        for job in await self.store.list_jobs(states=[JobState.STOPPING]):
            self.follower.stop_requested(job.id)
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
                if (
                    job.state in leases.HOLDING_STATES
                    or job.train_run.backend_job_id is not None
                    or job.train_run.in_doubt
                ):
                    try:
                        await self.follower.follow(job)
                    except Exception:  # one job's trouble must not stop the others being followed
                        log.exception("following job %s failed", job.id)
            exporting = await self.follower.follow_exports()
            if any(j.state is JobState.QUEUED for j in active):
                await self.follower.start_queued()
            return bool(active) or exporting

    def foreign_busy(self, active: list[Job]) -> set[str]:
        return self.follower.foreign_busy(active)

    def log_path(self, job: Job, purpose: Purpose) -> Path:
        return self.follower.log_path(job, purpose)


def _log_failure(task: asyncio.Task[bool]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("supervisor tick failed", exc_info=task.exception())
