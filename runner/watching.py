"""Watching launched jobs: their processes' state, progress and milestones, stops escalated on their deadlines, and
how each run or export ended.

The supervisor's tick calls this under its lock, once per job; everything here is idempotent, so a restarted bot
carries on from what the store says (the stop's deadlines too: they are on the job's row). Every change is a
transition of runner/lifecycle.py (an export's: lifecycle_side.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from runner import lifecycle, lifecycle_side
from runner.backends import Backend, ProcessRef
from runner.command import SwiftCommand
from runner.config import Config
from runner.failures import classify_failure, with_cause
from runner.levers import not_applied
from runner.lifecycle import apply
from runner.progress import ProgressTail, read_final_summary
from runner.run_files import find_run_dir
from runner.settle import Stopped, Succeeded, decide_outcome, ended_well
from storage.errors import StaleState
from storage.failure_facts import SchedulerEnded
from storage.jobs import JobStore
from storage.models import Job, JobState

log = logging.getLogger(__name__)


class Watcher:
    def __init__(self, store: JobStore, config: Config, backend: Backend) -> None:
        self.store, self.config, self.backend = store, config, backend
        self._tails: dict[str, ProgressTail] = {}

    def forget(self, job_id: str) -> None:
        self._tails.pop(job_id, None)

    async def follow(self, job: Job) -> None:
        """One job handed to its backend: its process's state, progress and milestones; settled once it is gone."""
        ref = ProcessRef.of(job, "train")
        status = await self.backend.status(ref)
        if job.state is JobState.QUEUED:  # submitted to a scheduling backend
            if status.alive and status.pending_reason is not None:
                if status.pending_reason != job.queue_reason:
                    await apply(self.store, job.id, lifecycle.pending(status.pending_reason))
                return
            if status.alive or status.returncode == 0:  # it ran (a job refused before running never started)
                job = await mark_running(self.store, job, status.started_at)
        await self._read_progress(job, final=not status.alive)
        if status.alive:
            if job.state is JobState.STOPPING:
                await self._escalate_stop(await self.store.require(job.id), ref)
            return
        await self.settle(await self.store.require(job.id), status.returncode, cause=status.cause)

    async def interrupt(self, job: Job) -> None:
        """SIGINT to a stopping job's trainer. One not started yet (its launcher, loaded, starting it) gets it at a
        later look, until the stop's first deadline: a stop typed in the job's first second is not lost."""
        if await self.backend.interrupt(ProcessRef.of(job, "train")) and job.stop_interrupted_at is None:
            await apply(self.store, job.id, lifecycle.interrupted(time.time()))

    async def _escalate_stop(self, job: Job, ref: ProcessRef) -> None:
        """SIGINT until it reaches the trainer, SIGTERM to the group from the stop's first deadline, SIGKILL from
        its second: deadlines on the row, so a bot restarted meanwhile keeps the schedule."""
        now = time.time()
        if job.stop_term_at is None or job.stop_kill_at is None:  # stopped by a bot that kept them in memory only
            clock = lifecycle.stop_clock(now, self.config.stop_grace_s, self.config.term_grace_s)
            job = await apply(self.store, job.id, lifecycle.Change(expect=frozenset({JobState.STOPPING}), fields=clock))
        if job.stop_kill_at is not None and now >= job.stop_kill_at:
            await self.backend.kill(ref)
        elif job.stop_term_at is not None and now >= job.stop_term_at:
            await self.backend.terminate(ref)
        elif job.stop_interrupted_at is None:
            await self.interrupt(job)

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
            try:
                await apply(self.store, job.id, lifecycle.milestone(m))
            except StaleState:  # it has ended meanwhile (settled by another bot on this database)
                return

    async def settle(self, job: Job, returncode: int | None, *, cause: SchedulerEnded | None = None) -> None:
        """The process is gone: decide how it ended, from its exit status, logging.jsonl and its log."""
        tail = self._tails.pop(job.id, None)
        progress = tail.progress if tail else job.progress
        if job.run_dir and progress.max_steps is None:
            progress = read_final_summary(Path(job.run_dir))
        failure = (
            None
            if ended_well(job, returncode, progress)
            else classify_failure(returncode, job.train_run.log, stop_requested=job.state is JobState.STOPPING)
        )
        outcome = decide_outcome(job, returncode, progress, failure, cause)
        levers = await asyncio.to_thread(not_applied, job.train_run.log)
        now = time.time()
        if isinstance(outcome, Succeeded):
            change = lifecycle.succeed(job, progress, returncode, now, levers)
        elif isinstance(outcome, Stopped):
            change = lifecycle.stopped(job, outcome.by, progress, returncode, now, levers)
        else:
            change = lifecycle.fail(job, outcome.failure, progress, returncode, now, levers)
        await apply(self.store, job.id, change)

    async def follow_export(self, job: Job) -> None:
        """One export handed to its backend: how it ended, once its process is gone."""
        status = await self.backend.status(ProcessRef.of(job, "export"))
        if status.alive:
            return
        export_dir = Path(job.export_dir or "")
        levers = await asyncio.to_thread(not_applied, job.export_run.log)
        if status.returncode == 0 and export_dir.is_dir():
            await apply(self.store, job.id, lifecycle_side.exported(job, str(export_dir), levers))
            return
        failure = classify_failure(status.returncode, job.export_run.log)
        failure = with_cause(failure, status.cause) if status.cause else failure
        await apply(self.store, job.id, lifecycle_side.export_failed(job, failure, levers))


async def mark_running(store: JobStore, job: Job, started_at: float | None = None) -> Job:
    """started_at: when the backend started it (Slurm's StartTime; local: when it was handed over), else now;
    it bounds which run folder is the job's, so it must not be later than the trainer's start."""
    command = SwiftCommand(job.argv, job.env).display()
    return await apply(store, job.id, lifecycle.running(job, started_at or time.time(), command))
