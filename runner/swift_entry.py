"""`swift sft` and `swift export` as one process: without the `swift` wrapper and the interpreter's teardown.

Run by swift's own interpreter: ``python .../runner/swift_entry.py sft --model ...`` (or ``export --adapters ...``). It
imports only the standard library (and, for the levers a job asks for, the parts of torch, transformers and swift that
swift's script imports anyway) before it hands over to swift's `swift/cli/sft.py` (or `export.py`), the script that
`swift sft` itself starts in a second python (after 4-6 s of its own imports on the H100 and H200 machines). Once
swift's main has returned (the adapters, checkpoints and logging.jsonl are written and closed), it flushes the output,
kills the dataloader workers and leaves with `os._exit(0)`: the interpreter's teardown (which fits PyTorch joining each
of the seed's 4 dataloader workers with a 5 s timeout) cost every training job 23-24 s on those machines with the GPU
still held (0.15 s from swift's "End time of running main" to the exit with this entry, on the H200). Under
`torch.distributed.run` (a job on several GPUs) every rank runs this entry and also leaves its process group first, so
the launcher sees each rank end at once and ends itself. An exception or a stop (KeyboardInterrupt) leaves the usual
way, with its traceback and exit status.

Before handing over it applies the `fast` profile's levers that the command and environment ask for (cuDNN's
attention off, padding-free micro-batches on sdpa, micro-batches by tokens, an export's shards written together):
runner/swift_levers.py, where each checks that what it reaches into is there, and otherwise leaves the job on the
plain path and says so in the log.

``python .../runner/swift_entry.py --warm`` is a process kept ready for the next job (runner/warm.py): it imports
swift (~15 s of a job's start-up on the H200 machine), then waits for one job on its stdin, a JSON line
``{"args": [...], "argv": [...], "env": {...}, "log": ..., "preamble": ...}``: ``args`` what would follow this
file on the job's command line, ``argv`` that whole command, ``env`` its environment, ``log`` the job's log (its
output goes there, after ``preamble``, what the imports printed). The job runs here as it would have run afresh,
unless something read at import could differ or a file it imported has changed since (`cold_reason`): then this
process becomes the fresh one (exec).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.util
import json
import logging
import multiprocessing
import os
import runpy
import sys
import time
import traceback
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING


def _sibling(name: str) -> ModuleType:
    """A module of this folder, loaded by its path: run as a script, runner/ is not a package on swift's path."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"trainbot_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


LEVER_PARTS = ("token_batches", "safetensors_writer")  # what swift_levers imports, loaded before it

if TYPE_CHECKING or __package__:  # imported as runner.swift_entry (the bot, tests)
    from runner import swift_levers as levers
else:  # run by swift's python as a script
    for part in LEVER_PARTS:
        _sibling(part)
    levers = _sibling("swift_levers")
NO_CUDNN_ATTENTION = levers.NO_CUDNN_ATTENTION

ENTRY_MARK = "runner/swift_entry.py"  # how a stop finds this process among the job's (backends/local.py)
SCRIPTS = {"sft": "swift.cli.sft", "export": "swift.cli.export"}  # what `swift sft` / `swift export` would run
WARM = "--warm"
READY = "[trainbot] ready:"  # a warm process's line once swift is imported
IMPORT_FAILED = "[trainbot] swift could not be imported here"  # its line instead, where the imports failed
# What swift's scripts import (swift/cli/sft.py, export.py), loaded by a warm process before its job comes;
# `sft_main`/`export_main` are attributes of a lazy module, so they are looked up too.
WARM_IMPORTS = (
    ("swift.cli.utils", ""),
    ("swift.ray_utils", ""),
    ("swift.pipelines", "sft_main"),
    ("swift.pipelines", "export_main"),
)
# The only variables a job's environment may set differently from the warm process's: nothing reads them at import
# (CUDA reads the first two when it starts, which a warm process has not let it do; the levers read the next two
# when the job comes; Triton reads its cache folder when it compiles a kernel).
LATE_ENV = frozenset(
    {
        "CUDA_VISIBLE_DEVICES",
        "CUDA_DEVICE_ORDER",
        NO_CUDNN_ATTENTION,
        levers.MICRO_BATCH_TOKENS,
        levers.TRITON_CACHE_DIR,
    }
)
# torch.cuda.is_available() (transformers asks it at import, and caches the answer) asks NVML instead of starting
# CUDA, which would fix the visible GPUs before the job has said which.
NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"
CUDA_ERROR_NOT_INITIALIZED = 3  # the driver API's answer before cuInit


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    # the script's own folder (runner/) must not shadow top-level modules of swift's dependencies
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    if sys.argv[1:] == [WARM]:
        return warm()
    if len(sys.argv) < 2 or sys.argv[1] not in SCRIPTS:
        sys.exit(f"usage: python {ENTRY_MARK} {{{'|'.join(SCRIPTS)}}} ARGS...")
    script = sys.argv[1]
    spec = importlib.util.find_spec(SCRIPTS[script])
    if spec is None or spec.origin is None:
        sys.exit("trainbot: ms-swift is not importable by this python")
    sys.argv = [spec.origin, *levers.apply(script, sys.argv[2:], os.environ)]
    runpy.run_path(spec.origin, run_name="__main__")
    started = time.monotonic()
    left_group = _leave_process_group()
    workers = multiprocessing.active_children()
    for worker in workers:
        worker.kill()
    logging.shutdown()
    rank = f"rank {os.environ['RANK']}: " if "RANK" in os.environ else ""
    print(
        f"[trainbot] {rank}swift's main returned; leaving without the interpreter's teardown "
        f"({len(workers)} worker process(es) stopped{left_group} in {time.monotonic() - started:.2f} s)",
        flush=True,
    )
    sys.stderr.flush()
    os._exit(0)


def warm() -> None:
    """Import swift, wait for one job (see the module's docstring), run it; leave quietly if none comes (EOF)."""
    began = time.monotonic()
    import_env = dict(os.environ)
    os.environ.setdefault(NVML_CHECK, "1")
    failed = None
    try:
        for module, name in WARM_IMPORTS:
            getattr(importlib.import_module(module), name) if name else importlib.import_module(module)
        cuda = _cuda_seen()
    except (Exception, SystemExit) as exc:  # a stop (KeyboardInterrupt) still ends it
        traceback.print_exc()
        failed, cuda = f"{type(exc).__name__}: {exc}", False
        print(f"{IMPORT_FAILED} ({failed}); a job handed to this process starts afresh", flush=True)
    os.environ.clear()
    os.environ.update(import_env)
    imported = _module_files()
    if failed is None:
        cuda_said = ("CUDA started" if _cuda_started() else "CUDA seen, not started") if cuda else "no CUDA"
        print(
            f"{READY} swift imported in {time.monotonic() - began:.1f} s ({cuda_said}); waiting for a job", flush=True
        )
    line = sys.stdin.readline()
    if not line:
        os._exit(0)  # the bot closed this process before any job came
    job = json.loads(line)
    _take_output(job["log"], job.get("preamble"))
    if failed is not None:
        print(
            levers.not_applied_line(
                "warm start",
                "warm_start",
                f"swift could not be imported in the process kept warm ({failed})",
                "starting swift afresh",
            ),
            flush=True,
        )
        os.execvpe(job["argv"][0], job["argv"], job["env"])
    why = cold_reason(import_env, job["env"], cuda=cuda, cuda_started=_cuda_started(), changed=changed_since(imported))
    if why is not None:
        print(f"[trainbot] not started warm: {why}; starting swift afresh", flush=True)
        os.execvpe(job["argv"][0], job["argv"], job["env"])
    os.environ.clear()
    os.environ.update(job["env"])
    print("[trainbot] started warm: in the process that imported swift before the job came", flush=True)
    sys.argv = [sys.argv[0], *job["args"]]
    main()


def cold_reason(
    import_env: dict[str, str], job_env: dict[str, str], *, cuda: bool, cuda_started: bool, changed: Sequence[str] = ()
) -> str | None:
    """Why a job must not run in a process that imported swift under `import_env` (None: it may); `changed`: the
    files of imported modules that changed on disk since (an upgraded swift or package)."""
    differ = sorted(
        k for k in import_env.keys() | job_env.keys() if import_env.get(k) != job_env.get(k) and k not in LATE_ENV
    )
    if differ:
        return f"its environment differs in {', '.join(differ)}, which may be read at import"
    if changed:
        return (
            f"{len(changed)} file(s) it imported changed since (e.g. {changed[0]}): swift or a package it uses "
            "was updated"
        )
    if cuda_started:
        return "CUDA was started while swift was imported, before the job named its GPUs"
    on_gpus = job_env.get("CUDA_VISIBLE_DEVICES", "") != ""
    if on_gpus != cuda:
        return (
            "swift was imported on a machine without CUDA"
            if on_gpus
            else "swift was imported seeing GPUs, and this job runs on the CPU"
        )
    return None


def _module_files() -> dict[str, int]:
    """Each imported module's file and its mtime (ns): what this process would run a job with."""
    stamps: dict[str, int] = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str):
            with contextlib.suppress(OSError):
                stamps[path] = os.stat(path).st_mtime_ns
    return stamps


def changed_since(stamps: dict[str, int]) -> list[str]:
    """The files of `stamps` that are no longer as they were (rewritten, removed); a stat each, ~10 ms for swift."""
    changed = []
    for path, mtime in stamps.items():
        try:
            if os.stat(path).st_mtime_ns != mtime:
                changed.append(path)
        except OSError:
            changed.append(path)
    return changed


def _cuda_seen() -> bool:
    """Whether swift's torch sees CUDA (asked through NVML, see NVML_CHECK); False for a CPU build."""
    torch = sys.modules.get("torch")
    return torch is not None and torch.cuda.is_available()


def _cuda_started() -> bool:
    """Whether the CUDA driver has started in this process (cuInit, which reads CUDA_VISIBLE_DEVICES, once).
    Loaded is not started: `import torch` maps libcuda (its CUDA libraries link it); the driver answers
    CUDA_ERROR_NOT_INITIALIZED to a device count until cuInit has run."""
    try:
        driver = ctypes.CDLL("libcuda.so.1", mode=os.RTLD_NOLOAD)  # only if already loaded: loading starts nothing
    except OSError:
        return False
    count = ctypes.c_int()
    return int(driver.cuDeviceGetCount(ctypes.byref(count))) != CUDA_ERROR_NOT_INITIALIZED


def _take_output(log: str, preamble: str | None) -> None:
    """Stdout and stderr to the job's log (appended), after what the imports printed; stdin from /dev/null."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    if preamble:
        try:
            with open(preamble, "rb") as earlier:
                os.write(fd, earlier.read())
            os.unlink(preamble)
        except OSError:
            pass
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


def _leave_process_group() -> str:
    """A rank under torch.distributed.run leaves its process group (NCCL warns at exit otherwise, and a rank that
    dies holding it can hang the others) before `os._exit`; torch is looked up, never imported, here."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return ""
    dist.destroy_process_group()
    return ", process group destroyed"


if __name__ == "__main__":
    main()
