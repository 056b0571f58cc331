"""Triton's kernels kept between jobs (issue 31): one folder under the data dir for every `fast` job, filled by
runner/compile_kernels.py ahead of the first job on an idle GPU, which never shares that GPU with a job. Here on
the CPU (nothing for Triton to compile: the process runs the recipe's model code and leaves its marker) with the
real local backend, the venv's swift python, transformers and peft, and the tiny model."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from demo.run import default_swift_bin
from runner import swift_entry
from runner.backends import ProcessRef
from runner.backends.local import LocalBackend
from runner.command import SwiftCommand
from runner.config import Config, load_config
from runner.gpus import Gpu, GpuProcess
from runner.kernels import idle_gpu, local_model, triton_cache
from tests.waiting import wait_until


@pytest.fixture
def config(tmp_path: Path) -> Config:
    (tmp_path / "trainbot.toml").write_text(f'[swift]\nbin = "{default_swift_bin()}"\n')
    return load_config(tmp_path / "trainbot.toml", base_dir=tmp_path)


@pytest.fixture
async def backend(tmp_path: Path, config: Config) -> AsyncIterator[LocalBackend]:
    b = LocalBackend(tmp_path / "exits", config)
    yield b
    await b.close()


def model_dir(tiny_llm: dict[str, Any]) -> Path:
    folder = local_model(tiny_llm["model_dir"])
    assert folder is not None
    return folder


async def compiled(backend: LocalBackend) -> bool:
    return backend.compiling is None


@pytest.mark.swift  # the tiny model is built by swift's python
async def test_the_kernels_are_compiled_once_into_the_folder_every_fast_job_reads(
    backend: LocalBackend, config: Config, tiny_llm: dict[str, Any]
) -> None:
    log = triton_cache(config.data_dir).parent / "compile.log"
    for _ in range(2):
        await backend.compile_kernels("cpu", model_dir(tiny_llm))
        assert backend.compiling == "cpu"
        await wait_until(lambda: compiled(backend), 120, "the kernels' compilation to end")
    text = log.read_text()
    assert "[trainbot] kernels: already compiled (trainbot-" in text, text  # the second time: its marker was there
    marker = next(triton_cache(config.data_dir).glob("trainbot-*.json"))
    assert set(json.loads(marker.read_text())["versions"]) == {
        "torch",
        "triton",
        "liger-kernel",
        "transformers",
        "peft",
    }


@pytest.mark.swift  # the tiny model is built by swift's python
async def test_a_job_for_the_gpu_the_kernels_are_compiled_on_stops_it_first(
    backend: LocalBackend, config: Config, tiny_llm: dict[str, Any], tmp_path: Path
) -> None:
    await backend.compile_kernels("cpu", model_dir(tiny_llm))
    compiling = backend._kernels
    assert compiling is not None and backend.compiling == "cpu"
    assert compiling.proc.pid in backend.own_pids([])  # the bot's own process on that GPU, not a foreign one
    entry = [*swift_entry_python(config), "-c", "print('the job ran')"]
    log = tmp_path / "job.log"
    await backend.launch(ProcessRef("ab3cd", "train"), SwiftCommand(tuple(entry)), log_path=log, gpus=("cpu",))
    assert compiling.proc.returncode == -signal.SIGKILL  # gone, with its memory, before the job started
    assert backend.compiling is None

    async def ran() -> bool:
        return "the job ran" in log.read_text()

    await wait_until(ran, 30, "the job to run")


def swift_entry_python(config: Config) -> list[str]:
    from runner.command import direct_entry

    entry = direct_entry(config.swift_bin)
    assert entry is not None and entry[-1] == swift_entry.__file__
    return entry[:-1]


def test_the_kernels_go_to_an_idle_gpu_no_job_holds() -> None:
    def gpu(index: str, procs: tuple[GpuProcess, ...] = (), source: str = "nvml") -> Gpu:
        return Gpu(index, "NVIDIA H100 80GB HBM3", 0.0, 81559.0, 0.0, procs, source)

    other = (GpuProcess(4242, 1000.0, "someone", "python", "python train.py"),)
    assert idle_gpu([gpu("0", other), gpu("1"), gpu("2")], held={"1"}) == "2"
    assert idle_gpu([gpu("0", other), gpu("1")], held={"1"}) is None
    assert idle_gpu([gpu("0", source="inventory")], held=()) is None


def test_only_a_model_folder_here_has_a_known_shape(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    assert local_model("Qwen/Qwen2.5-7B-Instruct") is None and local_model(tmp_path / "m") is None
    (tmp_path / "m" / "config.json").write_text("{}")
    assert local_model(str(tmp_path / "m")) == tmp_path / "m"
