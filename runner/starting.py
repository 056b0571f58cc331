"""Starting jobs and exports: what may start is launched, and a launch caught midway (the bot stopped between
recording it and seeing it through) is resolved, so nothing starts twice.

Each launch is recorded with a token of its own before anything starts (runner/lifecycle.launch,
lifecycle_side.export_begun); the backend finds what it started by that token, or knows that nothing was. The
supervisor's tick and commands call this under their lock, which it shares: an export is handed to the backend
outside it (a slow `sbatch` holds up nothing else), and while it is, no tick takes its launch for one caught midway.
A try session waits in the same line as the queued jobs, but runner/trying.py starts it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from runner import admission, lifecycle, lifecycle_side
from runner.backends import Backend, Launched, LaunchError, NotKnownYet, ProcessRef, new_launch_token
from runner.command import SwiftCommand, build_export
from runner.config import Config
from runner.errors import CannotLaunch, OutputInUse, launch_refusal
from runner.gpus import GpuProbe
from runner.lifecycle import apply
from runner.paths import OutsideRoot
from runner.planner import export_entry
from runner.watching import Watcher, mark_running
from storage.failure_facts import OutputUnwritable
from storage.jobs import JobStore
from storage.models import ExportState, Job, JobState, Purpose, Run

log = logging.getLogger(__name__)


class Starter:
    def __init__(
        self, store: JobStore, config: Config, probe: GpuProbe, backend: Backend, watcher: Watcher, lock: asyncio.Lock
    ) -> None:
        self.store, self.config, self.probe, self.backend = store, config, probe, backend
        self.watcher, self._lock = watcher, lock
        self._handing_over: set[str] = set()  # exports being handed to the backend outside the lock

    async def start_queued(self) -> None:
        """Launch the queued jobs that may start; tell the others why they wait and their place in line."""
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
                await apply(self.store, d.job.id, lifecycle.waiting(d.job, d.reason, d.position))

    async def _launch(self, job: Job) -> None:
        path = log_path(self.config, job, "train")
        begun = Run(log_path=str(path), launch_token=new_launch_token())  # in the store before anything starts
        job = await apply(self.store, job.id, lifecycle.launch(begun, scheduled=self.backend.schedules_gpus))
        handed_over = time.time()  # the trainer starts after this: no run folder of its can be older
        try:
            _admitted(self.config, job, await self.store.holding(), path)  # before anything is made or started
            _check_writable(Path(job.output_dir))
            launched = await self.backend.launch(
                ProcessRef.of(job, "train"), SwiftCommand(job.argv, job.env), log_path=path, gpus=job.gpus
            )
        except LaunchError as exc:
            await apply(self.store, job.id, lifecycle.launch_failed(exc.refusal, exc.detail, time.time()))
            return
        await self._record_launch(job, launched, handed_over)

    async def _record_launch(self, job: Job, launched: Launched, started_at: float | None) -> None:
        """What a launch started (or, after a restart, what it had started, found again), then the job's next state;
        started_at: no later than the trainer's start (watching.mark_running)."""
        run = launched.run(log_path(self.config, job, "train"), job.train_run.launch_token)
        job = await apply(self.store, job.id, lifecycle.launched(job, run, launched.host))
        if self.backend.schedules_gpus:  # the notice carries facts; each front end words them
            status = await self.backend.status(ProcessRef.of(job, "train"))
            await apply(
                self.store,
                job.id,
                lifecycle.handed_over(
                    self.backend.name, launched.backend_job_id, status.pending_reason if status.alive else None
                ),
            )
        elif job.state is JobState.STARTING:
            await mark_running(self.store, job, started_at)
        elif job.state is JobState.STOPPING:  # stopped while the launch was in doubt: the stop reaches it now
            await self.watcher.interrupt(job)

    async def resolve_launch(self, job: Job, purpose: Purpose) -> None:
        """A launch begun (its token in the store) but not seen through: the bot stopped in between. What it started
        is followed from now on; where the backend knows for certain that nothing started (nor will: a launcher
        that comes late finds its launch given up), the job goes back in line and an export is handed over again.
        Either way nothing runs twice. An export this bot is handing over right now is not caught midway."""
        if purpose == "export" and job.id in self._handing_over:
            return
        try:
            found = await self.backend.reclaim(ProcessRef.of(job, purpose))
        except NotKnownYet as exc:
            log.warning("job %s: whether its %s started is not known yet: %s", job.id, purpose, exc)
            return
        if purpose == "export":
            if found is None:
                await self._export_again(job)
            else:
                run = found.run(log_path(self.config, job, "export"), job.export_run.launch_token)
                await apply(self.store, job.id, lifecycle_side.export_found(run))
        elif found is not None:
            await self._record_launch(job, found, found.proc_start_time)
        elif job.state is JobState.STOPPING:  # stopped before it ever started
            await self.watcher.settle(job, None)
        else:
            await apply(self.store, job.id, lifecycle.requeue(job))

    # ---- exports ----------------------------------------------------------------------------------------------

    async def begin_export(self, job: Job, export_dir: Path, gpus: tuple[str, ...]) -> Job:
        """Under the lock: the export marked, with its launch token, before it is handed over (`hand_over_export`,
        outside the lock)."""
        run = Run(log_path=str(log_path(self.config, job, "export")), launch_token=new_launch_token())
        job = await apply(self.store, job.id, lifecycle_side.export_begun(str(export_dir), gpus, run))
        self._handing_over.add(job.id)
        return job

    async def hand_over_export(self, job: Job, cmd: SwiftCommand, by: str | None) -> Job:
        """Outside the lock: the export begun by `begin_export` to the backend; CannotLaunch if it refuses."""
        try:
            launched = await self.backend.launch(
                ProcessRef.of(job, "export"),
                cmd,
                log_path=Path(job.export_run.log_path or ""),
                gpus=job.export_gpus or ("cpu",),
            )
        except LaunchError as exc:
            async with self._lock:
                self._handing_over.discard(job.id)
                await apply(self.store, job.id, lifecycle_side.export_launch_failed(exc.refusal, tell=False))
            raise CannotLaunch(job.id, exc.refusal) from exc
        async with self._lock:
            self._handing_over.discard(job.id)
            run = launched.run(Path(job.export_run.log_path or ""), job.export_run.launch_token)
            return await apply(self.store, job.id, lifecycle_side.export_started(job, run, by, cmd.display()))

    async def _export_again(self, job: Job) -> None:
        """An export whose process never started: handed over again, as `export` had asked."""
        cmd = build_export(
            checkpoint=job.progress.last_checkpoint or "",
            export_dir=Path(job.export_dir or ""),
            config=self.config,
            entry=export_entry(self.config, self.backend.name),
        )
        path = log_path(self.config, job, "export")
        run = Run(log_path=str(path), launch_token=new_launch_token())
        job = await apply(self.store, job.id, lifecycle_side.export_handed_again(run))
        try:
            launched = await self.backend.launch(
                ProcessRef.of(job, "export"), cmd, log_path=path, gpus=job.export_gpus or ("cpu",)
            )
        except LaunchError as exc:
            await apply(self.store, job.id, lifecycle_side.export_launch_failed(exc.refusal, tell=True))
            return
        await apply(
            self.store,
            job.id,
            lifecycle_side.export_started(job, launched.run(path, run.launch_token), None, cmd.display(), again=True),
        )

    def foreign_busy(self, jobs: list[Job]) -> set[str]:
        """GPUs with processes that are not ours (ours: every process of these jobs' trainings, exports and try
        sessions under way, found from their pids)."""
        refs = [ProcessRef.of(j, "train") for j in jobs if j.train_run.pid is not None]
        refs += [
            ProcessRef.of(j, "export")
            for j in jobs
            if j.export_state is ExportState.EXPORTING and j.export_run.pid is not None
        ]
        refs += [ProcessRef.of(j, "try") for j in jobs if j.try_state.holds and j.try_run.pid is not None]
        return self.probe.foreign_busy(self.backend.own_pids(refs) | {os.getpid()})


def log_path(config: Config, job: Job, purpose: Purpose) -> Path:
    """The seed's naming: logs/<kind>_training_<id>.log, logs/<kind>_export_<id>.log."""
    name = "training" if purpose == "train" else "export"
    return config.log_dir / f"{job.kind}_{name}_{job.id}.log"


def _admitted(config: Config, job: Job, holding: list[Job], path: Path) -> None:
    """runner/admission's refusal as a launch failure: the job fails before any process starts, the path named."""
    try:
        admission.admit_launch(config, job, holding, path)
    except (OutputInUse, OutsideRoot) as exc:
        raise LaunchError(launch_refusal(exc)) from exc


def _check_writable(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LaunchError(OutputUnwritable(str(output_dir), exc.strerror, created=False)) from exc
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise LaunchError(OutputUnwritable(str(output_dir)))
