"""trainbot itself on a real GPU: the console front end with the local backend runs the fixed LLM recipe (pointed
at the 7B-shaped model by the config), and what it says is checked against the GPU and the job's own files.

    python3 scripts/gpu/validate.py --config trainbot.toml --work DIR [--stop-at 10] [--export] [--gpu 0]

Without --stop-at the job runs to `succeeded` (then --export merges its last checkpoint where trainbot puts it:
on the job's GPU, now free); with --stop-at N it is stopped once step N is logged. While it runs: the `gpus` answer
next to nvidia-smi and raw NVML (v1 and v2 memory figures) taken at the same moment, whether trainbot recognises the
process on the GPU as its job's, and the card's progress (step, ETA, memory) every second, to judge the ETA
against when the job really ended. DIR/console.txt: the transcript, time-stamped; DIR/validate.json: the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TextIO, cast

from bot.console import Console
from runner.config import load_config
from runner.gpus import descendants
from runner.kernels import triton_cache
from runner.runtime import Runtime
from storage.models import ExportState, Job, JobState

T0 = time.time()


class Transcript(io.TextIOBase):
    """What the console prints, each line time-stamped (seconds since start), to stdout and a file."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("w", buffering=1)

    def write(self, s: str) -> int:
        for line in s.splitlines():
            text = f"{time.time() - T0:8.1f}  {line}\n"
            self.file.write(text)
            sys.stdout.write(text)
        sys.stdout.flush()
        return len(s)

    def isatty(self) -> bool:
        return False


def smi() -> dict[str, Any]:
    def q(args: list[str]) -> str:
        try:
            return subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"nvidia-smi failed: {exc}"

    return {"gpu": q(["--query-gpu=index,name,memory.used,memory.total,memory.reserved,utilization.gpu,driver_version",
                      "--format=csv,noheader,nounits"]),
            "apps": q(["--query-compute-apps=pid,process_name,used_memory", "--format=csv,noheader,nounits"])}


def nvml_raw(index: int) -> dict[str, Any]:
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(index)
        v1 = pynvml.nvmlDeviceGetMemoryInfo(h)
        out: dict[str, Any] = {"v1_used_mib": v1.used / 2**20, "v1_total_mib": v1.total / 2**20,
                               "util": pynvml.nvmlDeviceGetUtilizationRates(h).gpu}
        with contextlib.suppress(Exception):
            v2 = pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
            out |= {"v2_used_mib": v2.used / 2**20, "v2_total_mib": v2.total / 2**20,
                    "v2_reserved_mib": v2.reserved / 2**20}
        return out
    except Exception as exc:
        return {"error": repr(exc)}


class Check:
    def __init__(self, config_path: Path, work: Path, gpu: str) -> None:
        self.config = load_config(config_path)
        self.work, self.gpu = work, gpu
        self.out = Transcript(work / "console.txt")
        self.facts: dict[str, Any] = {"trace": [], "gpu_checks": []}

    async def cmd(self, console: Console, line: str) -> Any:
        console.say(f"train> {line}")
        return await console.command(line)

    async def gpu_check(self, console: Console, runtime: Runtime, job: Job | None, label: str) -> None:
        snap = await asyncio.to_thread(runtime.probe.refresh)
        nv, s = nvml_raw(int(self.gpu) if self.gpu.isdigit() else 0), smi()
        await self.cmd(console, "gpus")
        gpu = snap.get(self.gpu)
        check: dict[str, Any] = {"label": label, "t": round(time.time() - T0, 1), "nvml": nv, "smi": s}
        if gpu is not None:
            check["trainbot"] = {"used_mib": gpu.memory_used_mib, "total_mib": gpu.memory_total_mib,
                                 "util": gpu.utilization_pct, "name": gpu.name,
                                 "processes": [(p.pid, p.used_mib, p.user, p.name) for p in gpu.processes]}
        if job is not None and job.train_run.pid is not None:
            own = descendants([job.train_run.pid])
            check["job_pid"] = job.train_run.pid
            check["gpu_pids_are_the_jobs"] = [p.pid in own for p in (gpu.processes if gpu else ())]
            check["foreign_busy"] = sorted(runtime.probe.foreign_busy(own))
            check["card_line"] = job.progress.gpu_mem_gib
        self.facts["gpu_checks"].append(check)
        print(json.dumps(check), flush=True)

    async def follow(self, console: Console, runtime: Runtime, job_id: str, *, stop_at: int | None,
                     check_at: int) -> Job:
        checked = False
        while True:
            await console.flush_notices()
            job = await runtime.store.require(job_id)
            p = job.progress
            self.facts["trace"].append((round(time.time() - T0, 1), str(job.state), p.step, p.max_steps,
                                        p.remaining_s, p.gpu_mem_gib, p.loss))
            if not checked and p.step is not None and p.step >= check_at:
                checked = True
                await self.gpu_check(console, runtime, job, f"{job_id} at step {p.step}")
                await self.cmd(console, f"status {job_id}")
            if stop_at is not None and p.step is not None and p.step >= stop_at and job.state is JobState.RUNNING:
                self.facts["stop_sent_t"] = round(time.time() - T0, 1)
                await self.cmd(console, f"stop {job_id}")
            if job.state.is_terminal:
                self.facts["ended_t"] = round(time.time() - T0, 1)
                await console.flush_notices()
                return job
            await asyncio.sleep(1.0)

    async def wait_warm(self, runtime: Runtime, within_s: float = 120.0) -> None:
        """Until the warm process has imported swift (runner/warm.py) and the bot has compiled Triton's kernels: a
        job comes to a bot that has been up a while, not one started a second before it."""
        def ready() -> bool:
            return runtime.local is not None and runtime.local.warm is not None and runtime.local.warm.ready()

        end = time.time() + within_s
        while not ready() and time.time() < end:  # noqa: ASYNC110 (a file to read, nothing to await)
            await asyncio.sleep(0.5)
        self.facts["warm_ready_t"] = round(time.time() - T0, 1) if ready() else None
        print(f"warm process ready: {self.facts['warm_ready_t']}", flush=True)
        end = time.time() + within_s  # and Triton's kernels compiled by the bot on an idle GPU (runner/kernels.py)
        while runtime.local is not None and runtime.local.compiling is not None \
                and time.time() < end:  # noqa: ASYNC110 (a process the backend owns, nothing to await)
            await asyncio.sleep(0.5)
        log = triton_cache(self.config.data_dir).parent / "compile.log"
        said = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else ["(not started)"]
        self.facts["kernels_t"], self.facts["kernels"] = round(time.time() - T0, 1), said[0]
        print(f"kernels: {said[0]} (waited until {self.facts['kernels_t']} s)", flush=True)

    async def main(self, stop_at: int | None, export: bool, export_wait_s: float) -> None:
        runtime = await Runtime.open(self.config)
        await runtime.start()
        console = Console(runtime, cast(TextIO, self.out))
        try:
            await self.wait_warm(runtime)
            await self.gpu_check(console, runtime, None, "idle, before the job")
            out = f"out={self.config.output_root}/{'stop' if stop_at else 'full'}-{int(T0)}"
            await self.cmd(console, f"llm gpu={self.gpu} {out} --dry-run")
            await self.cmd(console, f"llm gpu={self.gpu} {out} profile=exact --dry-run")
            self.facts["submitted_t"] = round(time.time() - T0, 1)
            reply = await self.cmd(console, f"llm gpu={self.gpu} {out}")
            if reply.job_id is None:
                self.facts["error"] = reply.text
                return
            job = await self.follow(console, runtime, reply.job_id, stop_at=stop_at, check_at=stop_at or 25)
            self.facts["job"] = {"id": job.id, "state": str(job.state), "started_at": job.started_at,
                                 "finished_at": job.finished_at, "step": job.progress.step,
                                 "max_steps": job.progress.max_steps, "train_loss": job.progress.train_loss,
                                 "last_checkpoint": job.progress.last_checkpoint, "exit_code": job.exit_code,
                                 "argv": list(job.argv)}
            if job.started_at and job.finished_at:
                self.facts["job"]["started_to_finished_s"] = round(job.finished_at - job.started_at, 1)
            await self.gpu_check(console, runtime, None, "after the job")
            await self.cmd(console, f"show {job.id}")
            if export and job.progress.last_checkpoint:
                t = time.time()
                await self.cmd(console, f"export {job.id}")
                while time.time() - t < export_wait_s:
                    await console.flush_notices()
                    job = await runtime.store.require(job.id)
                    if job.export_state is not ExportState.EXPORTING:
                        break
                    await asyncio.sleep(1.0)
                await console.flush_notices()
                merged = Path(job.export_dir or "")
                self.facts["export"] = {"state": str(job.export_state), "seconds": round(time.time() - t, 1),
                                        "dir": str(merged), "files": sorted(
                                            (f.name, f.stat().st_size) for f in merged.glob("*") if f.is_file())}
                if job.export_state is ExportState.EXPORTING:
                    await self.cmd(console, f"logs {job.id}")
            await self.cmd(console, "list")
        finally:
            (self.work / "validate.json").write_text(json.dumps(self.facts, indent=1, default=str))
            await runtime.close()
        self.summarise()

    def summarise(self) -> None:
        trace, job = self.facts["trace"], self.facts.get("job", {})
        end = self.facts.get("ended_t")
        if end is not None:
            for frac in (0.25, 0.5, 0.75):
                rows = [r for r in trace if r[2] and r[3] and r[2] >= frac * r[3] and r[4] is not None]
                if rows:
                    t, _, step, total, eta, _, _ = rows[0]
                    print(f"ETA at step {step}/{total}: said {eta:.0f} s, really {end - t:.0f} s", flush=True)
        print("job:", json.dumps(job), flush=True)
        if "export" in self.facts:
            print("export:", json.dumps(self.facts["export"]), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--gpu", default="0")
    ap.add_argument("--stop-at", type=int)
    ap.add_argument("--export", action="store_true")
    ap.add_argument("--export-wait-s", type=float, default=300.0)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    asyncio.run(Check(args.config, args.work, args.gpu).main(args.stop_at, args.export, args.export_wait_s))


if __name__ == "__main__":
    main()
