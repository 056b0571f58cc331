"""NVML's memory figures read as nvidia-smi shows them (runner/gpus.py): v2 where the driver has it, else v1."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from runner.gpus import _read_device, gpus_from_raw
from runner.profiles import free_gib


class _Nvml:
    """Just enough of pynvml for `_read_device`: v2 memory info where `v2` is true, else only v1."""

    class NVMLError(Exception):
        pass

    NVMLError_FunctionNotFound = NVMLError

    def __init__(self, v2: bool) -> None:
        self.v2 = v2
        if v2:
            self.nvmlMemory_v2 = 0x02000028

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetMemoryInfo(self, h: int, version: int | None = None) -> SimpleNamespace:
        gib = 1024**3
        if version is None:  # v1: the driver's reservation counted as used
            return SimpleNamespace(total=80 * gib, used=gib // 2, free=80 * gib - gib // 2)
        if not self.v2:
            raise self.NVMLError("Function Not Found")
        return SimpleNamespace(total=80 * gib, used=0, free=80 * gib - gib // 2, reserved=gib // 2)

    def nvmlDeviceGetUtilizationRates(self, h: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=0)

    def nvmlDeviceGetName(self, h: int) -> str:
        return "NVIDIA H100 80GB HBM3"

    def __getattr__(self, name: str) -> Any:
        def none(h: int) -> list[object]:
            return []

        return none


@pytest.mark.parametrize("v2", [True, False])
def test_nvml_memory_reads_like_nvidia_smi_where_the_driver_can(v2: bool) -> None:
    (g,) = gpus_from_raw([_read_device(_Nvml(v2), 0)])
    assert g.memory_total_mib == 80 * 1024
    assert (g.memory_used_mib, g.memory_reserved_mib) == ((0.0, 512.0) if v2 else (512.0, None))
    assert free_gib(g) == pytest.approx(79.5)  # the same free memory either way
