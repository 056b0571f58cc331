"""Run one training command and measure it: wall time from launch to exit, when each logging.jsonl line
appeared, and the GPU as NVML sees it (utilisation, memory used, power) every half second.

Used by probe.py and compare.py (importable; stdlib + pynvml only, so it runs under any python with the job's
environment). The command runs in its own process group; `stop_after_step` kills that group (SIGKILL) as soon as
a logged step reaches it, for short probes that keep the full job's schedule.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SAMPLE_S = 0.5


@dataclass
class RunResult:
    name: str
    argv: list[str]
    rc: int | None
    wall_s: float  # launch -> process exit (or kill)
    killed_after_step: int | None
    logged: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # (seconds after launch, record)
    gpu: list[tuple[float, int, int, int]] = field(default_factory=list)  # (t, util %, mem used MiB, power W)
    gpu_baseline_mib: int | None = None
    notes: list[str] = field(default_factory=list)

    # ---- derived figures ------------------------------------------------------------------------------------

    def steps(self) -> list[tuple[float, int, int, dict[str, Any]]]:
        """(t, step, max_steps, record) for each training log line (not the final summaries)."""
        out = []
        for t, rec in self.logged:
            step, _, total = str(rec.get("global_step/max_steps", "")).partition("/")
            if "loss" in rec and step.isdigit() and total.isdigit():
                out.append((t, int(step), int(total), rec))
        return out

    def losses(self) -> dict[int, float]:
        return {step: float(rec["loss"]) for _, step, _, rec in self.steps()}

    def train_loss(self) -> float | None:
        for _, rec in self.logged:
            if "train_loss" in rec:
                return float(rec["train_loss"])
        return None

    def summary(self) -> dict[str, Any]:
        steps = self.steps()
        first = steps[0][0] if steps else None
        last_step = steps[-1][1] if steps else None
        s_per_step = None
        if len(steps) >= 2 and steps[-1][1] > steps[0][1]:
            s_per_step = (steps[-1][0] - steps[0][0]) / (steps[-1][1] - steps[0][1])
        busy = [g for g in self.gpu if first is not None and first <= g[0] <= (steps[-1][0] if steps else 0)]
        mem = [g[2] for g in self.gpu]
        swift_mem = [float(r["memory(GiB)"]) for _, _, _, r in steps if "memory(GiB)" in r]
        return {
            "name": self.name, "rc": self.rc, "wall_s": round(self.wall_s, 1),
            "first_step_s": None if first is None else round(first, 1),
            "last_step": last_step, "max_steps": steps[-1][2] if steps else None,
            "s_per_step_after_first": None if s_per_step is None else round(s_per_step, 3),
            "losses": self.losses(), "train_loss": self.train_loss(),
            "gpu_peak_mib": max(mem) if mem else None, "gpu_baseline_mib": self.gpu_baseline_mib,
            "swift_peak_gib": max(swift_mem) if swift_mem else None,
            "util_mean_pct": round(sum(g[1] for g in busy) / len(busy), 1) if busy else None,
            "util_max_pct": max(g[1] for g in busy) if busy else None,
            "power_mean_w": round(sum(g[3] for g in busy) / len(busy)) if busy else None,
            "killed_after_step": self.killed_after_step, "notes": self.notes,
        }

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"summary": self.summary(), "raw": asdict(self)}, indent=1))


def _nvml_handle(index: int) -> Any:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml, pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:
        return None


def gpu_used_mib(index: int = 0) -> int | None:
    nv = _nvml_handle(index)
    if nv is None:
        return None
    lib, h = nv
    return int(lib.nvmlDeviceGetMemoryInfo(h).used // 2**20)


class _Sampler(threading.Thread):
    def __init__(self, t0: float, index: int, out: list[tuple[float, int, int, int]]) -> None:
        super().__init__(daemon=True)
        self.t0, self.index, self.out, self.stop = t0, index, out, threading.Event()

    def run(self) -> None:
        nv = _nvml_handle(self.index)
        if nv is None:
            return
        lib, h = nv
        while not self.stop.is_set():
            with contextlib.suppress(Exception):
                u = lib.nvmlDeviceGetUtilizationRates(h).gpu
                m = lib.nvmlDeviceGetMemoryInfo(h).used // 2**20
                p = lib.nvmlDeviceGetPowerUsage(h) // 1000
                self.out.append((round(time.time() - self.t0, 2), int(u), int(m), int(p)))
            self.stop.wait(SAMPLE_S)


def find_logging(output_dir: Path, after: float) -> Path | None:
    """logging.jsonl of the run started after `after`: in the newest vN-* folder, or in output_dir itself."""
    cands = [p for p in output_dir.glob("v*-*/logging.jsonl") if p.stat().st_mtime >= after]
    direct = output_dir / "logging.jsonl"
    if direct.exists() and direct.stat().st_mtime >= after:
        cands.append(direct)
    return max(cands, key=lambda p: p.stat().st_mtime) if cands else None


@dataclass(frozen=True)
class Warm:
    """A process started before the job (runner/swift_entry.py --warm under runner/launcher.py --warm): `argv`,
    `env`; once its output shows `ready`, the job is handed to it by writing `order` to its stdin."""

    argv: Sequence[str]
    env: Mapping[str, str]
    order: bytes
    ready: str
    ready_within_s: float = 300.0


def run(name: str, argv: Sequence[str], *, env: Mapping[str, str], output_dir: Path, log_path: Path,
        stop_after_step: int | None = None, deadline_s: float | None = None, gpu_index: int = 0,
        warm: Warm | None = None) -> RunResult:
    """Launch argv (own process group, output to log_path), watch it until it exits; see the module doc. With
    `warm`, the job is handed to a process started (and ready) before it, and the time runs from the hand-over."""
    baseline = gpu_used_mib(gpu_index)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if warm is None:
        t0 = time.time()
        proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=dict(env), start_new_session=True)
        reader = _Timestamper(proc, log_path, t0, f"# {name}: {' '.join(argv)}")
        reader.start()
    else:
        proc = subprocess.Popen(list(warm.argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.PIPE, env=dict(warm.env), start_new_session=True)
        reader = _Timestamper(proc, log_path, time.time(), f"# {name} (warm): {' '.join(warm.argv)}")
        reader.start()
        end = time.time() + warm.ready_within_s
        while warm.ready not in log_path.read_text(errors="replace") and proc.poll() is None and time.time() < end:
            time.sleep(0.2)
        t0 = time.time()
        reader.t0 = t0  # the lines after this one count from the hand-over
        reader.mark(f"# handed over: {' '.join(argv)}")
        assert proc.stdin is not None
        proc.stdin.write(warm.order)
        proc.stdin.close()
    result = RunResult(name, list(argv), None, 0.0, None, gpu_baseline_mib=baseline)
    sampler = _Sampler(t0, gpu_index, result.gpu)
    sampler.start()
    jsonl: Path | None = None
    offset = 0
    killed = False
    while True:
        done = proc.poll() is not None
        if jsonl is None:
            jsonl = find_logging(output_dir, t0 - 1)
        if jsonl is not None:
            with jsonl.open("rb") as f:
                f.seek(offset)
                data = f.read()
            end = data.rfind(b"\n") + 1
            offset += end
            now = round(time.time() - t0, 2)
            for line in data[:end].splitlines():
                with contextlib.suppress(ValueError):
                    result.logged.append((now, json.loads(line)))
        if done:
            break
        steps = result.steps()
        over_deadline = deadline_s is not None and time.time() - t0 > deadline_s
        if (stop_after_step is not None and steps and steps[-1][1] >= stop_after_step) or over_deadline:
            killed = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            result.killed_after_step = steps[-1][1] if steps else None
            if over_deadline:
                result.notes.append(f"killed at the {deadline_s:.0f} s deadline")
            break
        time.sleep(0.2)
    result.wall_s = time.time() - t0
    result.rc = proc.returncode
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers (dataloader workers)
    if killed:
        _wait_gpu_released(gpu_index, baseline)
    sampler.stop.set()
    sampler.join(2)
    reader.join(5)
    return result


class _Timestamper(threading.Thread):
    """Copies the command's output to the log, each line (tqdm's \\r updates too) led by seconds since launch."""

    def __init__(self, proc: subprocess.Popen[bytes], path: Path, t0: float, head: str) -> None:
        super().__init__(daemon=True)
        self.proc, self.path, self.t0 = proc, path, t0
        self.log = path.open("w", buffering=1)
        self.log.write(head + "\n")
        self.lock = threading.Lock()

    def mark(self, line: str) -> None:
        with self.lock:
            self.log.write(line + "\n")

    def run(self) -> None:
        assert self.proc.stdout is not None
        with self.log:
            buf = b""
            while chunk := os.read(self.proc.stdout.fileno(), 65536):
                buf += chunk.replace(b"\r", b"\n")
                *lines, buf = buf.split(b"\n")
                stamp = f"{time.time() - self.t0:8.2f} "
                with self.lock:
                    self.log.writelines(stamp + line.decode("utf-8", "replace") + "\n"
                                        for line in lines if line.strip())
            if buf.strip():
                self.log.write(f"{time.time() - self.t0:8.2f} " + buf.decode("utf-8", "replace") + "\n")


def _wait_gpu_released(index: int, baseline: int | None, timeout_s: float = 30.0) -> None:
    """After a kill, wait until the GPU memory is back near where it was, so the next run starts clean."""
    if baseline is None:
        return
    end = time.time() + timeout_s
    while time.time() < end:
        used = gpu_used_mib(index)
        if used is None or used <= baseline + 1024:
            return
        time.sleep(0.5)
