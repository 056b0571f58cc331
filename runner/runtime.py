"""One running trainbot: the store, the GPU probe, the backend and the supervisor.

The supervisor ticks every `progress_poll_seconds` while a job or export is active; with none it sleeps until the
store changes (a job submitted in this process) or `safety_poll_seconds` pass (one another process left behind).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from runner import leases
from runner.backends import Backend
from runner.backends.local import LocalBackend
from runner.command import resolve_recipe
from runner.config import Config
from runner.gpus import GpuProbe
from runner.kernels import idle_gpu, local_model
from runner.supervisor import Supervisor
from runner.trying import TryService
from runner.wakeable import WakeableLoop
from storage.jobs import JobStore
from storage.models import Kind

log = logging.getLogger(__name__)


def make_backend(config: Config) -> Backend:
    if config.backend.kind == "slurm":
        from runner.backends.slurm import SlurmBackend  # only teams with Slurm need it loaded

        return SlurmBackend(config)
    return LocalBackend(config.data_dir / "exits", config)


class Runtime:
    """Open with `await Runtime.open(config)`; `start()` begins the schedules in the running event loop."""

    def __init__(self, config: Config, store: JobStore, probe: GpuProbe, backend: Backend) -> None:
        self.config, self.store, self.probe = config, store, probe
        self.supervisor = Supervisor(store, config, probe, backend)
        self.tries = TryService(store, config, self.supervisor, probe)  # `/train try`: a job's model, asked
        self.local = backend if isinstance(backend, LocalBackend) else None
        if self.local is not None:
            self.local.on_exit = self.supervisor.wake
        self._scheduler: AsyncIOScheduler | None = None
        self.ticks = WakeableLoop(
            "supervisor", self._tick, store.changes, config.safety_poll_seconds, busy_ignores_changes=True
        )

    @classmethod
    async def open(cls, config: Config, *, db_path: Path | None = None) -> Runtime:
        store = await JobStore.open(db_path or config.db_path)
        probe = GpuProbe(list(config.gpu_inventory) or None)
        await asyncio.to_thread(probe.refresh)
        runtime = cls(config, store, probe, make_backend(config))
        await runtime.supervisor.refresh_facts()  # swift's version and Liger, in a thread, before any plan
        return runtime

    async def start(self) -> None:
        """Recover what ran while we were away, then tick: progress and exits, and GPU probes."""
        await self.tries.recover()  # first: a try an earlier bot left gives its GPU back before jobs start
        await self.supervisor.recover()
        if self.local is not None and any(g.source == "nvml" for g in self.probe.snapshot().gpus):
            self.local.keep_warm()  # on a CPU machine (tests, the demo) only once a job has run
            self.tries.keep_warm()
            await self._compile_kernels()
        self.ticks.start()
        self._scheduler = AsyncIOScheduler()
        self._scheduler.add_job(
            self._refresh_gpus,
            "interval",
            seconds=self.config.gpu_poll_seconds,
            max_instances=1,
            coalesce=True,
            id="gpus",
        )
        self._scheduler.start()

    async def _compile_kernels(self) -> None:
        """Triton's kernels (Liger's) compiled on an idle GPU before the first job (runner/kernels.py), where the
        `fast` jobs use Liger and the recipe's model is a folder here; off with `[runner] warm_start = false`."""
        assert self.local is not None
        if not self.config.warm_start or not self.supervisor.facts.liger:
            return
        model = local_model(resolve_recipe(Kind.LLM, self.config).value("model"))
        gpu = idle_gpu(self.probe.snapshot().gpus, leases.held(await self.store.holding()))
        if model is not None and gpu is not None:
            await self.local.compile_kernels(gpu, model)

    async def _tick(self) -> float | None:
        busy = await self.supervisor.tick()
        return self.config.progress_poll_seconds if busy else None

    async def _refresh_gpus(self) -> None:
        await asyncio.to_thread(self.probe.refresh)
        await self.supervisor.refresh_facts()  # a stat of swift.bin; probes again only when swift changed

    async def close(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        await self.ticks.close()
        await self.tries.close()
        await self.supervisor.close()
        if self.local is not None:
            await self.local.close()
        await self.store.close()
