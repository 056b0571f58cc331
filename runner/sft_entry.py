"""`swift sft` for one process, without its wrapper and without the interpreter's teardown.

Run by swift's own interpreter, with swift's sft arguments: ``python .../runner/sft_entry.py --model ...``.
It imports only the standard library before it hands over to swift's `swift/cli/sft.py`, the script that
`swift sft` itself starts in a second python (after 4-6 s of its own imports on the H100 and H200 machines).
Once swift's main has returned (the adapters, checkpoints and logging.jsonl are written and closed), it flushes
the output, kills the dataloader workers and leaves with `os._exit(0)`: the interpreter's teardown (which fits
PyTorch joining each of the seed's 4 dataloader workers with a 5 s timeout) cost every job 23-24 s on those
machines with the GPU still held (0.15 s from swift's "End time of running main" to the exit with this entry,
on the H200).
An exception or a stop (KeyboardInterrupt) leaves the usual way, with its traceback and exit status.
"""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing
import os
import runpy
import sys
import time

ENTRY_MARK = "runner/sft_entry.py"  # how a stop finds this process among the job's (backends/local.py)


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    # the script's own folder (runner/) must not shadow top-level modules of swift's dependencies
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.util.find_spec("swift.cli.sft")
    if spec is None or spec.origin is None:
        sys.exit("trainbot: ms-swift is not importable by this python")
    sys.argv = [spec.origin, *sys.argv[1:]]
    runpy.run_path(spec.origin, run_name="__main__")
    started = time.monotonic()
    workers = multiprocessing.active_children()
    for worker in workers:
        worker.kill()
    logging.shutdown()
    print(f"[trainbot] swift's main returned; leaving without the interpreter's teardown "
          f"({len(workers)} worker process(es) stopped in {time.monotonic() - started:.2f} s)", flush=True)
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
