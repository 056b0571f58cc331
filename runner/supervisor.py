"""The supervisor: what people ask of jobs (submit, start, stop, export, delete), and the tick that follows them.

A request changes the store (each change a transition of runner/lifecycle.py, with its event and notice, in one
transaction; runner/actions.py says whether it applies) and wakes the runtime's loop; it never waits for a tick.
Each tick, under one lock with the requests, hands every launched job to runner/watching.py (progress, stops,
how it ended) and every launch caught midway and every queued job to runner/starting.py. It never talks to
people: the front ends deliver the notices. Everything is idempotent per tick, so a restarted bot simply carries
on from what the store says (`recover`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from runner import actions, admission, leases, lifecycle, planner
from runner.actions import Action
from runner.backends import Backend, ProcessRef
from runner.command import build_export
from runner.config import Config
from runner.errors import GpuMissing, NoCheckpoint
from runner.gpus import GpuProbe
from runner.job_request import JobRequest as JobRequest
from runner.job_request import check_request, fingerprint, made_under
from runner.lifecycle import apply
from runner.planner import DIRECT_NOTE as DIRECT_NOTE
from runner.planner import DIRECT_RANKS_NOTE as DIRECT_RANKS_NOTE
from runner.planner import Plan as Plan
from runner.planner import ProbedFacts, export_entry, probe_facts
from runner.starting import Starter, log_path
from runner.watching import Watcher
from storage.jobs import JobStore
from storage.models import Job, JobState, Purpose, Run, TryState
from storage.notices import JobDeleted, Notice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submitted:
    job: Job
    new: bool  # False: the job an earlier request under the same idempotency key made


class Supervisor:
    """`wake`: asks the runtime's loop for a tick soon (runtime.Runtime gives its loop's)."""

    def __init__(
        self, store: JobStore, config: Config, probe: GpuProbe, backend: Backend, wake: Callable[[], None]
    ) -> None:
        self.store, self.config, self.probe, self.backend = store, config, probe, backend
        self._lock = asyncio.Lock()  # one tick (or request) changes jobs at a time
        self.watcher = Watcher(store, config, backend)
        self.starter = Starter(store, config, probe, backend, self.watcher, self._lock)
        self._wake = wake
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
        """Check a request (runner/job_request.py), record its job and queue it: what `submit_checked` does, for a
        caller below the front ends (a script, a benchmark); they go through runner/service.py."""
        return (await self.submit_checked(check_request(req, self.config), idempotency_key=idempotency_key)).job

    async def submit_checked(self, req: JobRequest, *, idempotency_key: str | None = None) -> Submitted:
        """Record the job of a request `check_request` returned and queue it (`req.hold`: record only, `created`
        until `start`). A job already made under `idempotency_key` from the same request is returned as it is
        (`new` False), nothing new recorded; from another request, IdempotencyKeyReused."""
        if idempotency_key is not None and (first := await made_under(self.store, idempotency_key, req)):
            return Submitted(first, new=False)
        if (missing := await self._missing_gpus(req)) is not None:
            raise missing
        plan = self.plan(req)
        async with self._lock:  # no second job may take the folder (or the key) between the check and the create
            if idempotency_key is not None and (first := await made_under(self.store, idempotency_key, req)):
                return Submitted(first, new=False)
            admission.admit(self.config, None, Path(req.output_dir), req.overrides, await self.store.holding())
            try:
                job = await self._create(req, plan, idempotency_key=idempotency_key)
            except sqlite3.IntegrityError:  # another process made the job under this key first: that is the job
                if idempotency_key is None or (first := await made_under(self.store, idempotency_key, req)) is None:
                    raise
                return Submitted(first, new=False)
        if not req.hold:
            self.wake()
        return Submitted(job, new=True)

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
        event, notice = lifecycle.created(req.user_id, plan.display, req.profile, tuple(plan.notes))
        job = await self.store.create(draft, event=event, notice=Notice("", notice))
        return await self.store.update(job.id, train_run=Run(log_path=str(self.log_path(job, "train"))))

    async def _admit(self, job: Job) -> None:
        """May this recorded job join the line (runner/admission): its paths, its folder free."""
        admission.admit(self.config, job.id, Path(job.output_dir), job.overrides, await self.store.holding())

    async def start(self, job_id: str, *, by: str | None) -> Job:
        """`start <id>`: a created job joins the line; a failed or stopped one goes back in line, resuming from its
        last checkpoint if it has one. The loop, woken, takes it from the line."""
        async with self._lock:
            job = await self.store.require(job_id)
            actions.check(job, Action.START)
            await self._admit(job)
            if job.state is JobState.CREATED:
                change = lifecycle.queue(by)
            else:
                plan = self.plan(
                    JobRequest(job.kind, job.gpus, Path(job.output_dir), job.overrides),
                    resume_from=job.progress.last_checkpoint,
                )
                change = lifecycle.restart(job, by, plan.argv, plan.env, plan.display)
            job = await apply(self.store, job_id, change)
        self.wake()
        return job

    async def stop(self, job_id: str, *, by: str | None) -> Job:
        async with self._lock:
            job = await self.store.require(job_id)
            if job.state is JobState.QUEUED and job.train_run.in_doubt:  # submitted before a restart? find it first
                await self.starter.resolve_launch(job, "train")
                job = await self.store.require(job_id)
            if job.state is JobState.STOPPING:
                return job
            actions.check(job, Action.STOP)
            if job.state is JobState.QUEUED:
                if job.train_run.backend_job_id is not None:
                    await self.backend.terminate(ProcessRef.of(job, "train"))  # leave the backend's queue too
                return await apply(self.store, job_id, lifecycle.leave_queue(by, time.time()))
            job = await apply(
                self.store,
                job_id,
                lifecycle.stop_requested(by, time.time(), self.config.stop_grace_s, self.config.term_grace_s),
            )
            await self.watcher.interrupt(job)
            return await self.store.require(job_id)

    async def export(self, job_id: str, *, by: str | None) -> Job:
        """Merge the last checkpoint into a model. The export is marked under the lock and handed to the backend
        outside it: a slow `sbatch` holds up no tick and no other command meanwhile."""
        async with self._lock:
            job = await self.store.require(job_id)
            actions.check(job, Action.EXPORT)
            checkpoint = job.progress.last_checkpoint or ""
            if not Path(checkpoint).is_dir():
                raise NoCheckpoint(job_id)
            export_dir = Path(checkpoint).parent / f"{Path(checkpoint).name}-merged"
            cmd = build_export(
                checkpoint=checkpoint,
                export_dir=export_dir,
                config=self.config,
                entry=export_entry(self.config, self.backend.name),
            )
            admission.admit_export(
                self.config, job, export_dir, await self.store.holding(), self.log_path(job, "export")
            )
            job = await self.starter.begin_export(job, export_dir, await self._export_gpus(job))
        return await self.starter.hand_over_export(job, cmd, by)

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
            actions.check(job, Action.DELETE)
            if job.try_state is not TryState.NONE and self.end_try is not None:
                await self.end_try(job_id)  # its lease goes with the job's row: its process first
            queued = job.state is JobState.QUEUED
            before = await self._line() if queued else []
            if queued and job.train_run.backend_job_id is not None:
                await self.backend.terminate(ProcessRef.of(job, "train"))  # Slurm refusing raises: nothing is forgotten
            await self.store.delete(job_id, notice=Notice(job_id, JobDeleted(by=by, name=job.name)))
            self.watcher.forget(job_id)
            for d in admission.moved_up(before, await self._line()):
                if d.purpose != "train":
                    continue  # a waiting try hears of its place from its own wait (runner/trying.py)
                await apply(self.store, d.job.id, lifecycle.waiting(d.job, d.reason, d.position, moved_up=True))
        if queued:
            self.wake()  # the line moved: the job behind it may start now

    async def _line(self) -> list[leases.Decision]:
        """Our line for this machine's GPUs (Slurm keeps its own): who starts, each waiting job's place."""
        if self.backend.schedules_gpus:
            return []
        holding = await self.store.holding()
        return admission.line(await self.store.line(), holding, self.foreign_busy(holding))

    # ---- the loop ------------------------------------------------------------------------------------------

    async def recover(self) -> None:
        """On start: what every tick does anyway, launches caught midway included (Starter.resolve_launch); only a
        launch recorded before launch tokens, which nothing can find again, goes back in line as it is."""
        async with self._lock:
            for job in await self.store.list_jobs(states=[JobState.STARTING]):
                if job.train_run.pid is None and job.train_run.launch_token is None:
                    await apply(self.store, job.id, lifecycle.requeue(job))
        await self.tick()

    def wake(self) -> None:
        """Tick soon (a request changed the line, a process ended): the runtime's loop runs a tick without waiting
        out its pace; the request does not wait for it."""
        if not self._closed:
            self._wake()

    async def close(self) -> None:
        """No more ticks: wait for one under way, so nothing touches the store after it closes."""
        async with self._lock:
            self._closed = True

    async def tick(self) -> bool:
        """Watch every launched job and export, resolve launches caught midway, start what may start; True when
        there is anything to follow."""
        async with self._lock:
            if self._closed:
                return False
            active = await self.store.active()
            for job in active:
                try:
                    if job.train_run.in_doubt:
                        await self.starter.resolve_launch(job, "train")
                    elif job.state in leases.HOLDING_STATES or job.train_run.backend_job_id is not None:
                        await self.watcher.follow(job)
                except Exception:  # one job's trouble must not stop the others being followed
                    log.exception("following job %s failed", job.id)
            exporting = await self.store.exporting()
            for job in exporting:
                if job.export_run.in_doubt:
                    await self.starter.resolve_launch(job, "export")
                else:
                    await self.watcher.follow_export(job)
            if any(j.state is JobState.QUEUED for j in active):
                await self.starter.start_queued()
            return bool(active) or bool(exporting)

    def foreign_busy(self, active: list[Job]) -> set[str]:
        return self.starter.foreign_busy(active)

    def log_path(self, job: Job, purpose: Purpose) -> Path:
        return log_path(self.config, job, purpose)
