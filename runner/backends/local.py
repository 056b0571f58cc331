"""Jobs as process groups on this machine, led by runner/launcher.py so their exit status outlives the bot."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from runner import launcher, swift_entry
from runner.backends import Launched, LaunchError, NotKnownYet, ProcessRef, RunStatus
from runner.child_env import child_env
from runner.command import SwiftCommand, direct_entry, swift_env
from runner.config import Config
from runner.errors import GpuMissing
from runner.gpus import descendants
from runner.kernels import KernelCompile, cache_env, triton_cache
from runner.swift_levers import not_applied_line
from runner.warm import RANK_LAUNCHER, WarmSlot, remove_preambles, warm_entry
from storage.failure_facts import LogUnwritable, SwiftMissing

if TYPE_CHECKING:
    from runner.slurm_cluster import ClusterGpus

# The processes that do the work: SIGINT goes to these, never only to the `swift` wrapper above them.
TRAINER_SCRIPTS = ("swift/cli/sft.py", "swift/cli/export.py", "swift/cli/_sft.py", swift_entry.ENTRY_MARK)
# A job on several GPUs (RANK_LAUNCHER): the launcher's agent names the script too, but its ranks are the trainers.
# SIGINT to the agent would make it send SIGTERM to the ranks (a kill, not a stop), so it is left to see them end.
START_TIME_TOLERANCE_S = 1.0


def device_env(gpus: Sequence[str]) -> dict[str, str]:
    """CUDA_VISIBLE_DEVICES in NVML's (PCI bus) order; NPROC_PER_NODE makes swift use torchrun on several."""
    if tuple(gpus) == ("cpu",):
        return {"CUDA_VISIBLE_DEVICES": ""}
    env = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": ",".join(gpus)}
    if len(gpus) > 1:
        env["NPROC_PER_NODE"] = str(len(gpus))
    return env


class LocalBackend:
    name = "local"
    schedules_gpus = False

    def __init__(self, exits_dir: Path, config: Config | None = None) -> None:
        self._exits_dir = exits_dir
        self._config = config  # its `scrub_env` names more variables to keep from jobs
        self._children: dict[int, asyncio.subprocess.Process] = {}  # ours to reap while we live
        self._watchers: set[asyncio.Task[None]] = set()
        # called when a child we launched exits, so the supervisor settles it (and starts the next queued job) at
        # once instead of at its next poll; children of an earlier bot are found by polling
        self.on_exit: Callable[[], None] | None = None
        self._warm: WarmSlot | None = None  # swift imported, waiting for the next job (runner/warm.py)
        self._warming: asyncio.Task[None] | None = None
        self._preambles_removed = False  # an earlier bot's, before our first warm process
        self._kernels: KernelCompile | None = None  # Triton's kernels compiled ahead of the first job

    @property
    def warm(self) -> WarmSlot | None:
        """The process waiting, swift imported, for the next job (None: none yet, or `warm_start = false`)."""
        return self._warm

    def keep_warm(self) -> None:
        """Start the warm process now (the bot starts on a GPU machine), rather than after the first job."""
        entry = direct_entry(self._config.swift_bin) if self._config is not None else None
        if entry is not None:
            self._start_warm(tuple(entry))

    async def compile_kernels(self, gpu: str, model: Path) -> None:
        """Start compiling Triton's kernels on `gpu` (idle: runner/kernels.py) into the folder the `fast` jobs read,
        unless that is under way; with swift's python, as a job would."""
        entry = direct_entry(self._config.swift_bin) if self._config is not None else None
        if entry is None or self._config is None or (self._kernels is not None and self._kernels.alive()):
            return
        env = child_env(
            self._config,
            swift_env(self._config) | cache_env(self._config.data_dir) | device_env((gpu,)) | {"PYTHONUNBUFFERED": "1"},
        )
        log = triton_cache(self._config.data_dir).parent / "compile.log"
        with contextlib.suppress(OSError):  # the first job compiles them then, as without this
            self._kernels = await KernelCompile.start(entry[:-1], model, gpu, env, log)

    @property
    def compiling(self) -> str | None:
        """The GPU Triton's kernels are being compiled on (None: not now)."""
        return self._kernels.gpu if self._kernels is not None and self._kernels.alive() else None

    async def close(self) -> None:
        """The warm process has no job: it goes with the bot (and so does the kernels' compilation)."""
        if self._kernels is not None:
            await self._kernels.stop()
        if self._warming is not None:
            await asyncio.gather(self._warming, return_exceptions=True)
        if self._warm is not None:
            await self._warm.close()
            self._warm = None

    def exit_file(self, ref: ProcessRef) -> Path:
        """The launch's claim and exit file (runner/launcher.py), one per launch token."""
        token = ref.run.launch_token
        return self._exits_dir / (
            f"{ref.job_id}.{ref.purpose}.{token}.json" if token else f"{ref.job_id}.{ref.purpose}.json"
        )  # a launch recorded before tokens

    async def launch(self, ref: ProcessRef, command: SwiftCommand, *, log_path: Path, gpus: Sequence[str]) -> Launched:
        exe = shutil.which(command.argv[0])
        if exe is None:
            raise LaunchError(SwiftMissing(command.argv[0]))
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = log_path.open("ab")
        except OSError as exc:
            raise LaunchError(LogUnwritable(str(log_path), exc.strerror)) from exc
        self._exits_dir.mkdir(parents=True, exist_ok=True)
        exit_file = self.exit_file(ref)
        if ref.run.launch_token is None:
            exit_file.unlink(missing_ok=True)  # the last launch's, under the one name a launch without a token has
        env = child_env(self._config, command.env | device_env(gpus) | {"PYTHONUNBUFFERED": "1"})
        argv = (exe, *command.argv[1:])
        if self._kernels is not None and self._kernels.gpu in gpus:
            await self._kernels.stop()  # its GPU is the job's now
            self._kernels = None
        slot = self._warm if self._warm is not None and self._warm.serves(argv) else None
        if slot is not None:
            self._warm = None  # the job's from now on
        passed_over = (
            self._warm.failure() if slot is None and self._warm is not None and self._warm.stands_for(argv) else None
        )
        with log:
            log.write(
                f"[trainbot] {time.strftime('%Y-%m-%d %H:%M:%S')} job {ref.job_id} {ref.purpose}: "
                f"{command.display()}\n".encode()
            )
            if passed_over is not None:
                log.write(
                    not_applied_line(
                        "warm start",
                        "warm_start",
                        f"swift could not be imported in the process kept warm ({passed_over})",
                        "starting swift afresh",
                    ).encode()
                    + b"\n"
                )
            log.flush()
            if slot is not None and not await slot.hand(argv, env, log=log_path, exit_file=exit_file):
                await slot.close()  # it died before its job came
                slot = None
            if slot is not None:
                proc = slot.proc
            else:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    launcher.__file__,
                    "--exit-file",
                    str(exit_file),
                    "--",
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                    env=env,
                )
        if (entry := warm_entry(argv)) is not None:
            self._start_warm(entry)  # for the next job
        self._children[proc.pid] = proc
        watcher = asyncio.create_task(self._watch(proc))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        try:
            started = psutil.Process(proc.pid).create_time()
        except psutil.NoSuchProcess:
            started = time.time()
        return Launched(pid=proc.pid, proc_start_time=started, host=socket.gethostname())

    def _start_warm(self, entry: tuple[str, ...]) -> None:
        """A warm process for `entry`, in the background, unless one is there or coming (or the config says no)."""
        if (
            self._config is None
            or not self._config.warm_start
            or self._warming is not None
            or (
                self._warm is not None
                and self._warm.entry == entry
                and self._warm.alive()
                and self._warm.failure() is None
            )
        ):
            return
        env = child_env(self._config, swift_env(self._config) | {"PYTHONUNBUFFERED": "1"})
        folder = self._exits_dir

        async def start() -> None:
            if not self._preambles_removed:
                remove_preambles(folder)
                self._preambles_removed = True
            try:
                slot = await WarmSlot.start(entry, env, folder)
            except OSError:
                return  # the next job starts afresh, as without warm_start
            finally:
                self._warming = None
            if self._warm is not None:
                await self._warm.close()
            self._warm = slot

        self._warming = asyncio.create_task(start())

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        await proc.wait()
        if self.on_exit is not None:
            self.on_exit()

    async def status(self, ref: ProcessRef) -> RunStatus:
        child = self._children.get(ref.run.pid or -1)
        if child is not None and child.returncode is None:
            return RunStatus(alive=True)  # our own child, not yet reaped: no /proc reads needed
        if child is not None:
            del self._children[child.pid]
        elif self._alive(ref):
            return RunStatus(alive=True)
        return RunStatus(alive=False, returncode=launcher.read_exit_file(self.exit_file(ref)))

    async def reclaim(self, ref: ProcessRef) -> Launched | None:
        """The launcher's claim names it (it may have ended since: its exit status is in the same file); none there,
        the claim is made for it, so a launcher that comes late starts nothing."""
        if ref.run.launch_token is None:
            return None  # a launch recorded before tokens: nothing to find it by (it was requeued, as then)
        path = self.exit_file(ref)
        self._exits_dir.mkdir(parents=True, exist_ok=True)
        if launcher.give_up(path):
            return None
        found = launcher.read_claim(path)
        if found is None:
            raise NotKnownYet(f"cannot read {path}")
        if found.pid is None:
            return None  # given up before, by an earlier look
        return Launched(pid=found.pid, proc_start_time=found.started, host=socket.gethostname())

    async def interrupt(self, ref: ProcessRef) -> bool:
        """SIGINT to swift's trainer; where none is known yet, to the launcher's whole group (swift's wrapper, say).
        False while the launcher has started nothing yet (it ignores the signal, its command would never see it)."""
        if not self._alive(ref):
            return False
        group = self._group(ref)
        trainers = [p for p in group if _is_trainer(p)]
        for proc in trainers:
            _send(proc.pid, signal.SIGINT)
        if trainers:
            return True
        if len(group) <= 1:
            return False
        self._signal_group(ref, signal.SIGINT)
        return True

    async def terminate(self, ref: ProcessRef) -> None:
        self._signal_group(ref, signal.SIGTERM)

    async def kill(self, ref: ProcessRef) -> None:
        self._signal_group(ref, signal.SIGKILL)

    async def cluster_gpus(self) -> ClusterGpus | None:
        return None  # the GPU probe (NVML) sees this machine's GPUs

    async def describe_missing_gpus(self, gpus: Sequence[str]) -> GpuMissing | None:
        return None  # the supervisor asks the GPU probe

    def own_pids(self, refs: Sequence[ProcessRef]) -> set[int]:
        """The processes of these runs, and of the kernels' compilation (the bot's own, no foreign process)."""
        pids = [ref.run.pid for ref in refs if ref.run.pid is not None and self._alive(ref)]
        if self._kernels is not None and self._kernels.alive():
            pids.append(self._kernels.proc.pid)
        return descendants(pids)

    def _alive(self, ref: ProcessRef) -> bool:
        """The pid is still our process (same start time: not a reused pid) and not a zombie."""
        if ref.run.pid is None:
            return False
        try:
            proc = psutil.Process(ref.run.pid)
            if (
                ref.run.proc_start_time is not None
                and abs(proc.create_time() - ref.run.proc_start_time) > START_TIME_TOLERANCE_S
            ):
                return False
            return proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def _group(self, ref: ProcessRef) -> list[psutil.Process]:
        try:
            leader = psutil.Process(ref.run.pid)
            return [leader, *leader.children(recursive=True)]
        except psutil.Error:
            return []

    def _signal_group(self, ref: ProcessRef, sig: signal.Signals) -> None:
        if ref.run.pid is not None and self._alive(ref):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(ref.run.pid, sig)  # the launcher leads its own session: pgid == its pid


def _is_trainer(proc: psutil.Process) -> bool:
    try:
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return RANK_LAUNCHER not in cmdline and any(script in cmdline for script in TRAINER_SCRIPTS)


def _send(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
