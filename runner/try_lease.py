"""A try session's GPU lease: taken through the queue's line, like a queued training's, and given back.

The lease lives in the job's row (try_state, try_gpus, try_seq, try_run), so leases.held and store.holding see it
and a training queued after it waits for it; each change is a transition of runner/lifecycle_side.py. The line is
read under the supervisor's lock, which its starts and commands hold too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from runner import admission, leases, lifecycle_side
from runner.config import Config
from runner.lifecycle import apply
from runner.supervisor import Supervisor
from runner.try_types import TryEnd, TryWaiting
from storage.errors import JobNotFound
from storage.jobs import JobStore
from storage.models import Run, TryState

CPU = leases.CPU


class TryLease:
    def __init__(self, store: JobStore, config: Config, supervisor: Supervisor) -> None:
        self.store, self.config, self.sup = store, config, supervisor

    async def take(self, job_id: str, gpus: tuple[str, ...], log_path: Path) -> AsyncIterator[TryWaiting]:
        """Take `gpus` through the queue's line (returns once they are this try's), telling its place while it
        waits. The CPU is not leased: the lease is only recorded, for a restarted bot to find the process."""
        run = Run(log_path=str(log_path))
        if gpus == CPU:
            await apply(self.store, job_id, lifecycle_side.try_on_cpu(run))
            return
        async with self.sup.lock:
            await apply(self.store, job_id, lifecycle_side.try_waiting(gpus, await self.store.next_try_seq(), run))
        told: TryWaiting | None = None
        while True:
            seen = self.store.changes.seq
            async with self.sup.lock:
                holding = await self.store.holding()
                holders, foreign = leases.held(holding), self.sup.foreign_busy(holding)
                decisions = admission.line(await self.store.line(), holding, foreign)
                mine = next((d for d in decisions if d.purpose == "try" and d.job.id == job_id), None)
                if mine is None:  # the job was deleted meanwhile (or its place taken back)
                    await self.store.require(job_id)
                    raise JobNotFound(job_id)
                if mine.start:
                    await apply(self.store, job_id, lifecycle_side.try_started(gpus))
                    return
            waiting = TryWaiting(
                mine.position or 1,
                gpus,
                {g: holders[g] for g in gpus if g in holders},
                tuple(g for g in gpus if g in foreign and g not in holders),
            )
            if waiting != told:
                told = waiting
                yield waiting
            await self.store.changes.wait(seen, self.config.gpu_poll_seconds)

    async def record(self, job_id: str, run: Run) -> None:
        """A try on Slurm: not leased here (Slurm schedules its GPUs), only recorded, for a restarted bot to find
        its batch job (by the launch token in its name, then by its id)."""
        await apply(self.store, job_id, lifecycle_side.try_on_cpu(run))

    async def started(self, job_id: str, run: Run) -> None:
        """The session's process is running (its pid and start time, to be found again)."""
        await apply(self.store, job_id, lifecycle_side.try_process(run))

    async def loaded(self, job_id: str, load_s: float, warm: bool) -> None:
        await apply(self.store, job_id, lifecycle_side.try_loaded(load_s, warm))

    async def wanted(self, job_id: str, gpus: tuple[str, ...]) -> bool:
        """Someone waits in line for `gpus` (a queued training, the job's own too, or another job's try)."""
        if gpus == CPU:
            return False
        for job, purpose in await self.store.line():
            wants = job.try_gpus if purpose == "try" else job.gpus
            if (purpose == "train" or job.id != job_id) and set(wants) & set(gpus):
                return True
        return False

    async def give_back(self, job_id: str, *, ended: TryEnd | None = None) -> None:
        """The job's try lease and process record go (the GPU is free for the next in line), and the loop is
        woken to start who waited for it."""
        try:
            job = await self.store.require(job_id)
            if job.try_state is not TryState.NONE:
                await apply(self.store, job_id, lifecycle_side.try_ended(job, ended))
        except JobNotFound:
            return
        self.sup.wake()
