"""`swift sft` and `swift export` as one process: without the `swift` wrapper and the interpreter's teardown.

Run by swift's own interpreter: ``python .../runner/swift_entry.py sft --model ...`` (or ``export --adapters ...``).
It imports only the standard library (and torch, which swift imports first anyway, when `NO_CUDNN_ATTENTION` is set)
before it hands over to swift's `swift/cli/sft.py` (or `export.py`), the script that `swift sft` itself starts in a
second python (after 4-6 s of its own imports on the H100 and H200 machines). Once swift's main has returned (the
adapters, checkpoints and logging.jsonl are written and closed), it flushes the output, kills the dataloader workers
and leaves with `os._exit(0)`: the interpreter's teardown (which fits PyTorch joining each of the seed's 4
dataloader workers with a 5 s timeout) cost every training job 23-24 s on those machines with the GPU still held
(0.15 s from swift's "End time of running main" to the exit with this entry, on the H200). Under
`torch.distributed.run` (a job on several GPUs) every rank runs this entry and also leaves its process group first,
so the launcher sees each rank end at once and ends itself. An exception or a stop (KeyboardInterrupt) leaves the
usual way, with its traceback and exit status.

`--padding_free true --attn_impl sdpa` (the `fast` profile's, where transformers masks packed samples apart):
ms-swift 4.6 refuses padding-free unless attention is flash-attn, whose kernels take each sample's bounds from the
packed batch. transformers (masking_utils.find_packed_sequence_indices) builds the same per-sample causal mask for
sdpa from the position ids that swift's padding-free batches carry, so for sdpa this entry lets the check pass
(importing transformers and swift's arguments module first, which swift imports anyway); on the CPU in float32 the
losses of padded, padding-free and the seed's 1 x 16 batches agree to 7 digits (tests/test_swift_entry.py). Why
`fast` uses it: runner/profiles.py, at PADDING_FREE_NOTE.

An export writes its model's shards together, a thread each, to the bytes safetensors writes (`write_safetensors`):
the 7B's 15.2 GB in 2.9-3.9 s from the H200 against 19 s one shard after the other (docs/gpu.md).

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
from collections.abc import Sequence
from typing import Any

ENTRY_MARK = "runner/swift_entry.py"  # how a stop finds this process among the job's (backends/local.py)
# Set by the `fast` profile (runner/profiles.py): scaled_dot_product_attention without cuDNN's kernel, which builds
# an execution plan for every new sequence length (a padded micro-batch's length changes at every step): ~8 ms of
# host time per layer and micro-batch on the H200 (torch.profiler, docs/gpu.md). PyTorch then takes its own
# flash or memory-efficient kernel: the same attention, by another kernel.
NO_CUDNN_ATTENTION = "TRAINBOT_NO_CUDNN_ATTENTION"
SCRIPTS = {"sft": "swift.cli.sft", "export": "swift.cli.export"}  # what `swift sft` / `swift export` would run
WARM = "--warm"
READY = "[trainbot] ready:"  # a warm process's line once swift is imported
# What swift's scripts import (swift/cli/sft.py, export.py), loaded by a warm process before its job comes;
# `sft_main`/`export_main` are attributes of a lazy module, so they are looked up too.
WARM_IMPORTS = (("swift.cli.utils", ""), ("swift.ray_utils", ""), ("swift.pipelines", "sft_main"),
                ("swift.pipelines", "export_main"))
# The only variables a job's environment may set differently from the warm process's: nothing reads them at import
# (CUDA reads the first two when it starts, which a warm process has not let it do; the entry reads the third).
LATE_ENV = frozenset({"CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", NO_CUDNN_ATTENTION})
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
    sys.argv = [spec.origin, *sys.argv[2:]]
    if os.environ.get(NO_CUDNN_ATTENTION) == "1":
        _no_cudnn_attention()
    if _flag(sys.argv, "--padding_free") == "true" and _flag(sys.argv, "--attn_impl") == "sdpa":
        _allow_padding_free_on_sdpa()
    if script == "export":
        _write_shards_together()
    runpy.run_path(spec.origin, run_name="__main__")
    started = time.monotonic()
    left_group = _leave_process_group()
    workers = multiprocessing.active_children()
    for worker in workers:
        worker.kill()
    logging.shutdown()
    rank = f"rank {os.environ['RANK']}: " if "RANK" in os.environ else ""
    print(f"[trainbot] {rank}swift's main returned; leaving without the interpreter's teardown "
          f"({len(workers)} worker process(es) stopped{left_group} in {time.monotonic() - started:.2f} s)",
          flush=True)
    sys.stderr.flush()
    os._exit(0)


def warm() -> None:
    """Import swift, wait for one job (see the module's docstring), run it; leave quietly if none comes (EOF)."""
    began = time.monotonic()
    import_env = dict(os.environ)
    os.environ.setdefault(NVML_CHECK, "1")
    for module, name in WARM_IMPORTS:
        getattr(importlib.import_module(module), name) if name else importlib.import_module(module)
    cuda = _cuda_seen()
    os.environ.clear()
    os.environ.update(import_env)
    imported = _module_files()
    cuda_said = ("CUDA started" if _cuda_started() else "CUDA seen, not started") if cuda else "no CUDA"
    print(f"{READY} swift imported in {time.monotonic() - began:.1f} s ({cuda_said}); waiting for a job", flush=True)
    line = sys.stdin.readline()
    if not line:
        os._exit(0)  # the bot closed this process before any job came
    job = json.loads(line)
    _take_output(job["log"], job.get("preamble"))
    why = cold_reason(import_env, job["env"], cuda=cuda, cuda_started=_cuda_started(),
                      changed=changed_since(imported))
    if why is not None:
        print(f"[trainbot] not started warm: {why}; starting swift afresh", flush=True)
        os.execvpe(job["argv"][0], job["argv"], job["env"])
    os.environ.clear()
    os.environ.update(job["env"])
    print("[trainbot] started warm: in the process that imported swift before the job came", flush=True)
    sys.argv = [sys.argv[0], *job["args"]]
    main()


def cold_reason(import_env: dict[str, str], job_env: dict[str, str], *, cuda: bool, cuda_started: bool,
                changed: Sequence[str] = ()) -> str | None:
    """Why a job must not run in a process that imported swift under `import_env` (None: it may); `changed`: the
    files of imported modules that changed on disk since (an upgraded swift or package)."""
    differ = sorted(k for k in import_env.keys() | job_env.keys()
                    if import_env.get(k) != job_env.get(k) and k not in LATE_ENV)
    if differ:
        return f"its environment differs in {', '.join(differ)}, which may be read at import"
    if changed:
        return (f"{len(changed)} file(s) it imported changed since (e.g. {changed[0]}): swift or a package it uses "
                "was updated")
    if cuda_started:
        return "CUDA was started while swift was imported, before the job named its GPUs"
    on_gpus = job_env.get("CUDA_VISIBLE_DEVICES", "") != ""
    if on_gpus != cuda:
        return ("swift was imported on a machine without CUDA" if on_gpus else
                "swift was imported seeing GPUs, and this job runs on the CPU")
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


def _no_cudnn_attention() -> None:
    import torch  # swift imports it first thing anyway

    torch.backends.cuda.enable_cudnn_sdp(False)
    print("[trainbot] attention: cuDNN's kernel off (no execution plan built per sequence length)", flush=True)


def _flag(argv: list[str], name: str) -> str | None:
    """The value given to `name` (the last one, as argparse reads it)."""
    values = [argv[i + 1].lower() for i, arg in enumerate(argv[:-1]) if arg == name]
    return values[-1] if values else None


def _allow_padding_free_on_sdpa() -> None:
    """swift's padding-free check lets sdpa pass, where transformers masks packed samples apart (else swift's own
    refusal stands, and says why)."""
    from transformers import masking_utils

    if not hasattr(masking_utils, "find_packed_sequence_indices"):
        return
    from swift.arguments import sft_args

    check = getattr(sft_args.SftArguments, "_check_padding_free", None)
    if check is None:
        return

    def check_but_sdpa(args: sft_args.SftArguments) -> None:
        if not (args.padding_free and not args.packing and args.attn_impl == "sdpa"):
            check(args)

    sft_args.SftArguments._check_padding_free = check_but_sdpa
    print("[trainbot] padding-free batches on sdpa attention: transformers masks the packed samples apart",
          flush=True)


# safetensors' dtype names, in the order of its Rust enum: a file lists its tensors by dtype (this order, last
# first), then by name, as safetensors.torch.save_file writes them.
SAFETENSORS_DTYPES = ("bool", "BOOL"), ("uint8", "U8"), ("int8", "I8"), ("float8_e5m2", "F8_E5M2"), \
    ("float8_e4m3fn", "F8_E4M3"), ("int16", "I16"), ("uint16", "U16"), ("float16", "F16"), ("bfloat16", "BF16"), \
    ("int32", "I32"), ("uint32", "U32"), ("float32", "F32"), ("complex64", "C64"), ("float64", "F64"), \
    ("int64", "I64"), ("uint64", "U64")


STAGING_BYTES = 64 << 20  # a shard's writer's pinned buffer for tensors on the GPU


def _write_shards_together() -> None:
    """transformers' save_pretrained (swift export's save) writes a model's shards one after the other, each through
    safetensors, which copies every tensor off the GPU and writes it holding the GIL: 19 s for the 7B's 15.2 GB
    on the H200 (docs/gpu.md). Here each shard has a thread of its own (copies and writes release the GIL), and
    save_pretrained returns once every shard is written, or raises what a write raised. The files are byte for
    byte what safetensors writes (tests/test_swift_entry.py)."""
    from concurrent.futures import Future, ThreadPoolExecutor

    modeling_utils: Any = importlib.import_module("transformers.modeling_utils")
    save_pretrained = modeling_utils.PreTrainedModel.save_pretrained

    def save_together(self: Any, *args: Any, **kwargs: Any) -> Any:
        began = time.monotonic()
        shards: list[tuple[str, Future[None]]] = []
        one_at_a_time = modeling_utils.safe_save_file
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="shard") as pool:
            modeling_utils.safe_save_file = lambda tensors, path, metadata=None: shards.append(
                (str(path), pool.submit(write_safetensors, tensors, str(path), metadata)))
            try:
                result = save_pretrained(self, *args, **kwargs)
            finally:
                modeling_utils.safe_save_file = one_at_a_time
        for _, shard in shards:
            shard.result()
        if shards:
            size = sum(os.path.getsize(path) for path, _ in shards) / 1e9
            print(f"[trainbot] {len(shards)} shard(s), {size:.2f} GB, written together in "
                  f"{time.monotonic() - began:.1f} s", flush=True)
        return result

    modeling_utils.PreTrainedModel.save_pretrained = save_together


def write_safetensors(tensors: dict[str, Any], path: str, metadata: dict[str, str] | None = None) -> None:
    """safetensors.torch.save_file's file, written tensor by tensor without the GIL; other dtypes than
    SAFETENSORS_DTYPES go through safetensors. A tensor on the GPU comes to the host through one pinned buffer of
    STAGING_BYTES, a copy at the bus's speed into memory used again and again: `.to("cpu")` made a new pageable
    tensor of each (page faults, then a staged copy), 10.6 s for the 7B's 15.2 GB on the H200."""
    import torch

    names = dict(SAFETENSORS_DTYPES)
    rank = {name: i for i, (name, _) in enumerate(SAFETENSORS_DTYPES)}
    kinds = {key: str(t.dtype).removeprefix("torch.") for key, t in tensors.items()}
    if any(kind not in names for kind in kinds.values()):
        from safetensors.torch import save_file

        save_file(tensors, path, metadata=metadata)
        return
    order = sorted(tensors, key=lambda key: (-rank[kinds[key]], key))
    header: dict[str, object] = {} if metadata is None else {"__metadata__": metadata}
    offset = 0
    for key in order:
        size = tensors[key].numel() * tensors[key].element_size()
        header[key] = {"dtype": names[kinds[key]], "shape": list(tensors[key].shape),
                       "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    staging = None
    with open(path, "wb") as out:
        out.write(len(text).to_bytes(8, "little") + text)
        for key in order:
            data = tensors[key].detach().contiguous().reshape(-1).view(torch.uint8)
            if data.device.type == "cpu":
                out.write(data.numpy().data)
                continue
            if staging is None:
                staging = torch.empty(STAGING_BYTES, dtype=torch.uint8, pin_memory=True)
            for start in range(0, data.numel(), STAGING_BYTES):
                chunk = staging[:min(STAGING_BYTES, data.numel() - start)]
                chunk.copy_(data[start:start + chunk.numel()])
                out.write(chunk.numpy().data)


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
