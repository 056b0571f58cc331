"""`swift sft` and `swift export` as one process: without the `swift` wrapper and the interpreter's teardown.

Run by swift's own interpreter: ``python .../runner/swift_entry.py sft --model ...`` (or ``export --adapters ...``).
It imports only the standard library before it hands over to swift's `swift/cli/sft.py` (or `export.py`), the
script that `swift sft` itself starts in a second python (after 4-6 s of its own imports on the H100 and H200
machines). Once swift's main has returned (the adapters, checkpoints and logging.jsonl are written and closed),
it flushes the output, kills the dataloader workers and leaves with `os._exit(0)`: the interpreter's teardown
(which fits PyTorch joining each of the seed's 4 dataloader workers with a 5 s timeout) cost every training job
23-24 s on those machines with the GPU still held (0.15 s from swift's "End time of running main" to the exit
with this entry, on the H200). Under `torch.distributed.run` (a job on several GPUs) every rank runs this entry
and also leaves its process group first, so the launcher sees each rank end at once and ends itself. An exception
or a stop (KeyboardInterrupt) leaves the usual way, with its
traceback and exit status.

`--padding_free true --attn_impl sdpa` (the `fast` profile's, where transformers masks packed samples apart):
ms-swift 4.6 refuses padding-free unless attention is flash-attn, whose kernels take each sample's bounds from
the packed batch. transformers (masking_utils.find_packed_sequence_indices) builds the same per-sample causal
mask for sdpa from the position ids that swift's padding-free batches carry, so for sdpa this entry lets the
check pass; on the CPU in float32 the losses of padded, padding-free and the seed's 1 x 16 batches agree to 7
digits (tests/test_swift_entry.py).
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
    if _flag(sys.argv, "--padding_free") == "true" and _flag(sys.argv, "--attn_impl") == "sdpa":
        _allow_padding_free_on_sdpa()
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
