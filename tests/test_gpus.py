from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from bot.words.format import SLACK
from bot.words.refusals import error_text
from runner.gpus import (
    MIB,
    Gpu,
    GpuProbe,
    RawGpu,
    cpu_device,
    descendants,
    gpus_from_raw,
    inventory,
    probe_nvml,
)

GIB = 1024 * MIB
H100 = "NVIDIA H100 80GB HBM3"


def _free_pid() -> int:
    """A pid no process has right now."""
    pid = 4_000_000
    while psutil.pid_exists(pid):
        pid += 1
    return pid


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def _probe(raw: list[RawGpu], fallback: int | None = None) -> GpuProbe:
    probe = GpuProbe(fallback, nvml=lambda: gpus_from_raw(raw))
    probe.refresh()
    return probe


def test_probe_nvml_returns_none_without_driver() -> None:
    assert probe_nvml() is None
    assert probe_nvml() is None  # and again: no stuck half-initialised state


def test_inventory_int_and_list() -> None:
    gpus = inventory(2)
    assert [g.index for g in gpus] == ["0", "1"]
    assert all(g.name == "configured GPU" and g.source == "inventory" for g in gpus)
    assert all(g.memory_used_mib is None and g.memory_total_mib is None for g in gpus)
    assert all(g.utilization_pct is None and g.processes == () for g in gpus)
    assert [g.index for g in inventory(["0", "3", "3", " 5 "])] == ["0", "3", "5"]
    assert [g.index for g in inventory("0,2")] == ["0", "2"]
    assert inventory(0) == []


def test_probe_falls_back_to_inventory_here() -> None:
    probe = GpuProbe(2)
    assert probe.snapshot().taken_at is None
    snap = probe.refresh()
    assert snap.source == "inventory" and probe.snapshot() is snap
    assert probe.indices() == ["0", "1"]
    assert snap.taken_at is not None and snap.cpu is not None and snap.cpu.index == "cpu"
    assert snap.get("cpu") is snap.cpu and snap.get("1") is snap.gpus[1] and snap.get("9") is None
    assert probe.foreign_busy(set()) == set()


async def test_refresh_in_thread() -> None:
    probe = GpuProbe(1)
    snap = await asyncio.to_thread(probe.refresh)
    assert probe.snapshot() is snap and probe.indices() == ["0"]


def test_cpu_device_has_real_memory_numbers() -> None:
    cpu = cpu_device()
    total = psutil.virtual_memory().total / MIB
    assert (cpu.index, cpu.name, cpu.source, cpu.processes) == ("cpu", "CPU", "cpu", ())
    assert cpu.memory_total_mib == pytest.approx(total)
    assert cpu.memory_used_mib is not None and 0 < cpu.memory_used_mib < total
    time.sleep(0.05)
    pct = cpu_device().utilization_pct
    assert pct is not None and 0.0 <= pct <= 100.0


def test_gpus_from_raw_conversion() -> None:
    gone = _free_pid()
    raw = [
        RawGpu(0, H100, 2 * GIB, 80 * GIB, 37, ((os.getpid(), 512 * MIB), (gone, None))),
        RawGpu(1, "unavailable (GPU is lost)"),
    ]
    g0, g1 = gpus_from_raw(raw)
    assert (g0.index, g0.name, g0.source) == ("0", H100, "nvml")
    assert (g0.memory_used_mib, g0.memory_total_mib, g0.utilization_pct) == (2048.0, 81920.0, 37.0)
    mine, other = g0.processes
    me = psutil.Process()
    assert (mine.pid, mine.used_mib, mine.user, mine.name) == (os.getpid(), 512.0, me.username(), me.name())
    assert mine.cmdline is not None and mine.cmdline.startswith(os.path.basename(me.cmdline()[0]))
    assert other.pid == gone and other.used_mib is None
    assert (other.user, other.name, other.cmdline) == (None, None, None)
    assert g1 == Gpu("1", "unavailable (GPU is lost)", None, None, None, (), "nvml")


def test_long_cmdline_is_shortened() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "x" * 500])
    try:
        deadline = time.monotonic() + 5  # until the child has exec'd python (before, /proc shows our cmdline)
        while "x" * 500 not in psutil.Process(proc.pid).cmdline() and time.monotonic() < deadline:
            time.sleep(0.01)
        (g,) = gpus_from_raw([RawGpu(0, H100, processes=((proc.pid, GIB),))])
        cmd = g.processes[0].cmdline
        assert cmd is not None and len(cmd) <= 160 and cmd.endswith("…")
        assert cmd.startswith(os.path.basename(sys.executable) + " -c import time")
    finally:
        proc.kill()
        proc.wait()


def test_descendants_includes_grandchildren() -> None:
    shell = subprocess.Popen(["sh", "-c", "sleep 60 & wait"])
    try:
        deadline = time.monotonic() + 5
        while not (kids := psutil.Process(shell.pid).children()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert kids
        assert {shell.pid, kids[0].pid} <= descendants({shell.pid})
        assert kids[0].pid in descendants({os.getpid()})
        gone = _free_pid()
        assert descendants({gone}) == {gone}
    finally:
        for k in psutil.Process(shell.pid).children(recursive=True):
            k.kill()
        shell.kill()
        shell.wait()


def test_foreign_busy_with_real_child(sleeper: subprocess.Popen[bytes]) -> None:
    own = descendants({os.getpid()})
    assert sleeper.pid in own
    stranger = next(p.pid for p in psutil.process_iter() if p.pid not in own)
    probe = _probe(
        [
            RawGpu(0, H100, processes=((sleeper.pid, 30 * GIB),)),
            RawGpu(1, H100, processes=((sleeper.pid, GIB), (stranger, 4 * GIB))),
            RawGpu(2, H100, processes=((_free_pid(), None),)),  # pid we cannot see: not ours
            RawGpu(3, H100),
        ]
    )
    assert probe.snapshot().source == "nvml"
    assert probe.indices() == ["0", "1", "2", "3"]
    assert probe.foreign_busy(own) == {"1", "2"}
    assert probe.foreign_busy(own | {stranger}) == {"2"}
    assert probe.foreign_busy(set()) == {"0", "1", "2"}


def _said(probe: GpuProbe, gpus: list[str]) -> str | None:
    """What a user is told: the probe's facts, worded by bot/words/texts."""
    missing = probe.describe_missing(gpus)
    return None if missing is None else error_text(missing, SLACK)


def test_describe_missing_nvml() -> None:
    probe = _probe([RawGpu(0, H100), RawGpu(1, H100)], fallback=4)  # NVML wins over the inventory
    assert probe.describe_missing(["0"]) is None
    assert probe.describe_missing(["1", "cpu"]) is None
    assert probe.describe_missing(["cpu"]) is None
    assert _said(probe, ["7"]) == (
        f"GPU 7 does not exist on this machine; it has GPUs 0 and 1 (2× {H100}). Try `gpu=0`."
    )
    assert _said(probe, ["1", "5", "6"]) == (
        f"GPUs 5 and 6 do not exist on this machine; it has GPUs 0 and 1 (2× {H100}). Try `gpu=1,0`."
    )


def test_describe_missing_mixed_single_and_none() -> None:
    mixed = _probe([RawGpu(0, "NVIDIA A100-SXM4-40GB"), RawGpu(1, "Tesla T4"), RawGpu(2, "Tesla T4")])
    assert _said(mixed, ["3", "4"]) == (
        "GPUs 3 and 4 do not exist on this machine; it has GPUs 0, 1 and 2 "
        "(1× NVIDIA A100-SXM4-40GB, 2× Tesla T4). Try `gpu=0,1`."
    )
    single = _probe([RawGpu(0, H100)])
    assert _said(single, ["1"]) == (f"GPU 1 does not exist on this machine; it has GPU 0 (1× {H100}). Try `gpu=0`.")
    none = GpuProbe(nvml=lambda: None)
    assert _said(none, ["0"]) == (
        "GPU 0 does not exist on this machine; it has no GPUs (not probed yet). Try `gpu=cpu`."
    )
    none.refresh()
    assert _said(none, ["0"]) == (
        "GPU 0 does not exist on this machine; it has no GPUs "
        "(no NVIDIA driver and no GPU inventory configured). Try `gpu=cpu`."
    )
    assert none.describe_missing(["cpu"]) is None


def test_describe_missing_inventory_here() -> None:
    probe = GpuProbe(2)
    probe.refresh()
    assert _said(probe, ["7"]) == (
        "GPU 7 does not exist on this machine; it has GPUs 0 and 1 (2× configured GPU). Try `gpu=0`."
    )
