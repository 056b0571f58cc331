"""Triton's compiled kernels kept between jobs and restarts (issue 31): one folder under the data dir that every
`fast` job on this machine's GPUs reads and fills (TRITON_CACHE_DIR), filled ahead of the first job by
runner/compile_kernels.py on one idle GPU while the bot starts.

The compiling process holds ~2.5 GB of its GPU for seconds. It never shares it with a job: it starts only on a GPU
that no job holds and no process uses, it counts as the bot's own there (not a foreign process a job would wait
for), and a job (or an export) that comes for that GPU stops it first (the kernels it had compiled stay in the
folder; Triton writes each file whole).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner import compile_kernels
from runner.gpus import Gpu
from runner.swift_levers import TRITON_CACHE_DIR


def triton_cache(data_dir: Path) -> Path:
    return data_dir / "compile" / "triton"


def cache_env(data_dir: Path) -> dict[str, str]:
    """What points a process at the kept kernels."""
    return {TRITON_CACHE_DIR: str(triton_cache(data_dir))}


def idle_gpu(gpus: Sequence[Gpu], held: Collection[str]) -> str | None:
    """The first GPU NVML sees with no process on it that no job holds (None: none)."""
    return next((g.index for g in gpus if g.source == "nvml" and not g.processes and g.index not in held), None)


def local_model(model: object) -> Path | None:
    """The recipe's model folder, where it is one on this machine (a hub id is not: its shape is not known)."""
    folder = Path(str(model)).expanduser()
    return folder if folder.is_absolute() and (folder / "config.json").is_file() else None


@dataclass
class KernelCompile:
    """runner/compile_kernels.py at work on `gpu` (the leader of its own process group)."""

    gpu: str
    proc: asyncio.subprocess.Process

    @classmethod
    async def start(
        cls, python: Sequence[str], model: Path, gpu: str, env: Mapping[str, str], log: Path
    ) -> KernelCompile:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                *python,
                compile_kernels.__file__,
                str(model),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                env=dict(env),
            )
        return cls(gpu, proc)

    def alive(self) -> bool:
        return self.proc.returncode is None

    async def stop(self) -> None:
        """Stop it (a job wants its GPU, or the bot closes) and wait until it is gone, its GPU memory with it."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()
