"""GPU discovery: NVML where there is a driver, a configured inventory otherwise, plus the CPU pseudo-device.

NVML is initialised lazily once and then kept initialised: `nvmlInit` can take about a second per GPU
when persistence mode is off, too slow to repeat every few seconds. After a global failure (driver
reloaded or gone) the state is reset and the next call initialises again. A module lock serialises all
NVML use, so `probe_nvml` may be called from worker threads (`asyncio.to_thread`).

NVML numbers GPUs in PCI bus order; jobs must run with CUDA_DEVICE_ORDER=PCI_BUS_ID for the indices here
to match what CUDA_VISIBLE_DEVICES selects.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import psutil

from runner.errors import GpuMissing, NoGpus

log = logging.getLogger(__name__)

MIB = 1024 * 1024
CMDLINE_MAX = 160


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_mib: float | None
    user: str | None
    name: str | None
    cmdline: str | None


@dataclass(frozen=True)
class Gpu:
    index: str
    name: str
    memory_used_mib: float | None
    memory_total_mib: float | None
    utilization_pct: float | None
    processes: tuple[GpuProcess, ...]
    source: Literal["nvml", "inventory", "cpu"]
    memory_reserved_mib: float | None = None  # held by the driver: neither used (as nvidia-smi counts) nor free


@dataclass(frozen=True)
class RawGpu:
    """One device as NVML reports it, as plain data: bytes (not MiB) and (pid, bytes used) pairs."""

    index: int
    name: str
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    utilization_pct: int | None = None
    processes: tuple[tuple[int, int | None], ...] = ()
    memory_reserved_bytes: int | None = None


@dataclass(frozen=True)
class GpuSnapshot:
    gpus: tuple[Gpu, ...]  # real (NVML) or configured GPUs; the CPU pseudo-device is `cpu`
    cpu: Gpu | None
    taken_at: datetime | None  # None: never refreshed
    source: Literal["nvml", "inventory", "none"]

    def devices(self) -> tuple[Gpu, ...]:
        return self.gpus if self.cpu is None else (*self.gpus, self.cpu)

    def get(self, index: str) -> Gpu | None:
        return next((g for g in self.devices() if g.index == index), None)


# ---- NVML: the only part that talks to the driver; returns plain data -------------------------------

_nvml_lock = threading.Lock()
_nvml_ready = False
_nvml_last_error: str | None = None


def _read_nvml() -> list[RawGpu] | None:
    """Read every device through pynvml; None when there is no usable driver/library."""
    global _nvml_ready, _nvml_last_error
    try:
        import pynvml
    except ImportError:
        return None
    with _nvml_lock:
        try:
            if not _nvml_ready:
                pynvml.nvmlInit()
                _nvml_ready = True
            devices = [_read_device(pynvml, i) for i in range(pynvml.nvmlDeviceGetCount())]
        except pynvml.NVMLError as e:
            if str(e) != _nvml_last_error:
                log.info("NVML unavailable: %s", e)
                _nvml_last_error = str(e)
            if _nvml_ready:
                with contextlib.suppress(pynvml.NVMLError):
                    pynvml.nvmlShutdown()
                _nvml_ready = False
            return None
        _nvml_last_error = None
        return devices


def _read_device(nv: Any, i: int) -> RawGpu:
    try:
        handle = nv.nvmlDeviceGetHandleByIndex(i)
    except nv.NVMLError as e:
        return RawGpu(i, f"unavailable ({e})")

    def opt(fn: Callable[..., Any]) -> Any:  # NotSupported, NoPermission, ... -> None
        try:
            return fn(handle)
        except nv.NVMLError:
            return None

    # v2 splits the driver's reservation (~0.5 GiB on an H100) from `used`, as nvidia-smi shows it; v1 counts
    # it as used, so an idle GPU would read 0.5 GiB used where nvidia-smi says 0 MiB
    v2 = getattr(nv, "nvmlMemory_v2", None)
    mem = (opt(lambda h: nv.nvmlDeviceGetMemoryInfo(h, version=v2)) if v2 else None) or opt(nv.nvmlDeviceGetMemoryInfo)
    util = opt(nv.nvmlDeviceGetUtilizationRates)
    procs: dict[int, int | None] = {}
    for kind in ("Compute", "Graphics"):
        try:
            try:
                infos = getattr(nv, f"nvmlDeviceGet{kind}RunningProcesses_v3")(handle)
            except nv.NVMLError_FunctionNotFound:  # driver older than the v3 API
                infos = getattr(nv, f"nvmlDeviceGet{kind}RunningProcesses_v2")(handle)
        except nv.NVMLError as e:
            log.debug("GPU %d: cannot list %s processes: %s", i, kind, e)
            continue
        for p in infos:  # the same pid may be listed as compute and graphics: keep the larger figure
            known = [v for v in (procs.get(p.pid), p.usedGpuMemory) if v is not None]
            procs[int(p.pid)] = max(known) if known else None
    return RawGpu(
        index=i,
        name=str(opt(nv.nvmlDeviceGetName) or "unknown GPU"),
        memory_used_bytes=None if mem is None else int(mem.used),
        memory_total_bytes=None if mem is None else int(mem.total),
        utilization_pct=None if util is None else int(util.gpu),
        processes=tuple(procs.items()),
        memory_reserved_bytes=int(mem.reserved) if hasattr(mem, "reserved") else None,
    )


# ---- conversion to Gpu, psutil lookups ---------------------------------------------------------------


def _mib(n: int | None) -> float | None:
    return None if n is None else n / MIB


def _attr(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except psutil.Error:
        return None


def _short_cmdline(args: list[str] | None) -> str | None:
    if not args:
        return None
    text = " ".join([os.path.basename(args[0]), *args[1:]])
    return text if len(text) <= CMDLINE_MAX else text[: CMDLINE_MAX - 1] + "…"


def describe_process(pid: int, used_bytes: int | None) -> GpuProcess:
    """Owner, name and short cmdline of a pid; all None when it is not visible (gone, other pid namespace)."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            user, name, args = _attr(proc.username), _attr(proc.name), _attr(proc.cmdline)
    except psutil.Error:
        return GpuProcess(pid, _mib(used_bytes), None, None, None)
    return GpuProcess(pid, _mib(used_bytes), user, name, _short_cmdline(args))


def gpus_from_raw(raw: Iterable[RawGpu]) -> list[Gpu]:
    return [
        Gpu(
            index=str(r.index),
            name=r.name,
            memory_used_mib=_mib(r.memory_used_bytes),
            memory_total_mib=_mib(r.memory_total_bytes),
            utilization_pct=None if r.utilization_pct is None else float(r.utilization_pct),
            processes=tuple(describe_process(pid, used) for pid, used in r.processes),
            source="nvml",
            memory_reserved_mib=_mib(r.memory_reserved_bytes),
        )
        for r in raw
    ]


def probe_nvml() -> list[Gpu] | None:
    """The machine's NVIDIA GPUs, or None when there is no driver/NVML library (never raises for that)."""
    raw = _read_nvml()
    return None if raw is None else gpus_from_raw(raw)


def inventory(gpus: Sequence[str] | int) -> list[Gpu]:
    """Configured GPUs for machines without a driver: 2 -> "0", "1"; also ["0", "3"] or "0,3"."""
    if isinstance(gpus, int):
        ids = [str(i) for i in range(max(gpus, 0))]
    else:
        ids = [s.strip() for s in (gpus.split(",") if isinstance(gpus, str) else gpus)]
    keep = [i for i in dict.fromkeys(ids) if i and i != "cpu"]
    return [Gpu(i, "configured GPU", None, None, None, (), "inventory") for i in keep]


_cpu_primed = False


def cpu_device() -> Gpu:
    """The `gpu=cpu` pseudo-device. CPU % is since the previous call (None on the very first)."""
    global _cpu_primed
    vm = psutil.virtual_memory()
    pct: float | None = psutil.cpu_percent(interval=None)
    if not _cpu_primed:
        _cpu_primed, pct = True, None
    return Gpu("cpu", "CPU", vm.used / MIB, vm.total / MIB, pct, (), "cpu")


def descendants(pids: Iterable[int]) -> set[int]:
    """The given pids plus all their living descendants."""
    out: set[int] = set()
    for pid in pids:
        out.add(pid)
        with contextlib.suppress(psutil.Error):
            out.update(c.pid for c in psutil.Process(pid).children(recursive=True))
    return out


class GpuProbe:
    """Caches the GPU picture. `refresh()` does the I/O (run it in a thread); everything else is cheap."""

    def __init__(
        self,
        fallback_inventory: Sequence[str] | int | None = None,
        *,
        nvml: Callable[[], list[Gpu] | None] = probe_nvml,
    ) -> None:
        self._fallback = tuple(inventory(fallback_inventory)) if fallback_inventory is not None else ()
        self._nvml = nvml
        self._lock = threading.Lock()
        self._snapshot = GpuSnapshot((), None, None, "none")

    def refresh(self) -> GpuSnapshot:
        with self._lock:
            found = self._nvml()
            source: Literal["nvml", "inventory", "none"] = "nvml"
            if found is None:
                source = "inventory" if self._fallback else "none"
            gpus = self._fallback if found is None else tuple(found)
            snap = GpuSnapshot(gpus, cpu_device(), datetime.now(UTC), source)
            self._snapshot = snap
            return snap

    def snapshot(self) -> GpuSnapshot:
        return self._snapshot

    def indices(self) -> list[str]:
        return [g.index for g in self._snapshot.gpus]

    def foreign_busy(self, own_pids: AbstractSet[int]) -> set[str]:
        """GPUs running a process that is not ours (own_pids: our jobs' pids with `descendants`)."""
        return {g.index for g in self._snapshot.gpus if any(p.pid not in own_pids for p in g.processes)}

    def describe_missing(self, requested: Sequence[str]) -> GpuMissing | None:
        """The GPUs asked for that this machine lacks, with what it has (None: it has them all)."""
        snap = self._snapshot
        have = [g.index for g in snap.gpus]
        wanted = [r for r in dict.fromkeys(r.strip() for r in requested) if r != "cpu"]
        missing = [r for r in wanted if r not in have]
        if not missing:
            return None
        why = None
        if not have:
            why = {"nvml": NoGpus.NONE_REPORTED, "inventory": NoGpus.NONE_CONFIGURED, "none": NoGpus.NO_DRIVER}[
                snap.source
            ]
            if snap.taken_at is None:
                why = NoGpus.NOT_PROBED
        models = ", ".join(f"{n}× {name}" for name, n in Counter(g.name for g in snap.gpus).items())
        suggest = ([w for w in wanted if w in have] + [h for h in have if h not in wanted])[: len(wanted)]
        return GpuMissing(tuple(missing), tuple(have), models, why, tuple(suggest))
