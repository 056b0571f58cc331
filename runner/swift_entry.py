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
"""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing
import os
import runpy
import sys
import time

ENTRY_MARK = "runner/swift_entry.py"  # how a stop finds this process among the job's (backends/local.py)
# Set by the `fast` profile (runner/profiles.py): scaled_dot_product_attention without cuDNN's kernel, which builds
# an execution plan for every new sequence length (a padded micro-batch's length changes at every step): ~8 ms of
# host time per layer and micro-batch on the H200 (torch.profiler, docs/gpu.md). PyTorch then takes its own
# flash or memory-efficient kernel: the same attention, by another kernel.
NO_CUDNN_ATTENTION = "TRAINBOT_NO_CUDNN_ATTENTION"
SCRIPTS = {"sft": "swift.cli.sft", "export": "swift.cli.export"}  # what `swift sft` / `swift export` would run


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    # the script's own folder (runner/) must not shadow top-level modules of swift's dependencies
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    if len(sys.argv) < 2 or sys.argv[1] not in SCRIPTS:
        sys.exit(f"usage: python {ENTRY_MARK} {{{'|'.join(SCRIPTS)}}} ARGS...")
    spec = importlib.util.find_spec(SCRIPTS[sys.argv[1]])
    if spec is None or spec.origin is None:
        sys.exit("trainbot: ms-swift is not importable by this python")
    sys.argv = [spec.origin, *sys.argv[2:]]
    if os.environ.get(NO_CUDNN_ATTENTION) == "1":
        _no_cudnn_attention()
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


def _no_cudnn_attention() -> None:
    import torch  # swift imports it first thing anyway

    torch.backends.cuda.enable_cudnn_sdp(False)
    print("[trainbot] attention: cuDNN's kernel off (no execution plan built per sequence length)", flush=True)


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
