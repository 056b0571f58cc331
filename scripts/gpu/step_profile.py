"""Where an optimizer step's time goes, from torch.profiler: run a training command through this wrapper and it
profiles optimizer steps START..START+COUNT-1 (CPU and CUDA), writes a summary to PROF_OUT and ends the job.

    python3 scripts/gpu/step_profile.py runner/swift_entry.py sft --model ...   (compare.py --wrap does this)
    env: PROF_OUT (a file), PROF_START (default 12), PROF_COUNT (default 3)

The summary: wall time per step, the GPU's busy time (the union of kernel intervals) and its idle gaps, kernels
launched per step, the host calls that wait for the GPU (synchronize, device-to-host copies, `.item()`), and the
top operators by CUDA time and by their own CPU time. Profiling slows the host a little: read the ratios.
"""

from __future__ import annotations

import functools
import os
import runpy
import sys
import time
from typing import Any

START = int(os.environ.get("PROF_START", "12"))
COUNT = int(os.environ.get("PROF_COUNT", "3"))
OUT = os.environ.get("PROF_OUT", "step_profile.txt")
SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "aten::_local_scalar_dense",
         "aten::item", "cudaMemcpyAsync")


def _busy_and_gaps(kernels: list[tuple[float, float]]) -> tuple[float, list[float]]:
    """The union of the kernel intervals (us) and the gaps between them."""
    busy, gaps, end = 0.0, [], None
    for start, stop in sorted(kernels):
        if end is None or start > end:
            if end is not None:
                gaps.append(start - end)
            busy += stop - start
            end = stop
        elif stop > end:
            busy += stop - end
            end = stop
    return busy, gaps


def _summary(prof: Any, step_walls: list[float]) -> str:
    from torch.autograd import DeviceType

    events = list(prof.events())
    kernels = [(e.time_range.start, e.time_range.end) for e in events if e.device_type == DeviceType.CUDA]
    busy, gaps = _busy_and_gaps(kernels)
    wall = sum(step_walls) * 1e6
    lines = [f"steps {START}..{START + COUNT - 1}: wall {', '.join(f'{w:.3f}' for w in step_walls)} s",
             f"GPU busy (union of {len(kernels)} kernels, {len(kernels) / COUNT:.0f} a step): {busy / 1e6:.3f} s "
             f"= {100 * busy / wall:.1f}% of the steps' wall time",
             f"GPU idle gaps: {len(gaps)}, total {sum(gaps) / 1e6:.3f} s; over 1 ms: {sum(g > 1e3 for g in gaps)} "
             f"({sum(g for g in gaps if g > 1e3) / 1e6:.3f} s); largest "
             + ", ".join(f"{g / 1e3:.1f}" for g in sorted(gaps)[-8:]) + " ms"]
    for name in SYNCS:
        hits = [e for e in events if e.name == name]
        if hits:
            cpu_s = sum(e.cpu_time_total for e in hits) / 1e6 / COUNT
            lines.append(f"{name}: {len(hits) / COUNT:.0f} a step, CPU {cpu_s:.3f} s a step")
    averages = prof.key_averages()
    for title, key in (("top by CUDA time:", "cuda_time_total"), ("top by own CPU time:", "self_cpu_time_total")):
        lines += ["", title, averages.table(sort_by=key, row_limit=25, max_name_column_width=60)]
    return "\n".join(lines)


def _install() -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import Trainer, TrainerCallback

    def sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    class StepProfile(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.prof: Any = None
            self.walls: list[float] = []
            self.began = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == START - 1 and self.prof is None:  # the step about to run is START
                sync()
                self.prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
                self.prof.start()
            if self.prof is not None:
                self.began = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.prof is None:
                return
            sync()
            self.walls.append(time.perf_counter() - self.began)
            if len(self.walls) == COUNT:
                self.prof.stop()
                text = _summary(self.prof, self.walls)
                with open(OUT, "w") as f:
                    f.write(text + "\n")
                print(f"[step_profile] written to {OUT}", flush=True)
                sys.stdout.flush()
                os._exit(0)

    original = Trainer.__init__

    @functools.wraps(original)  # swift reads the signature to choose between `tokenizer` and `processing_class`
    def init(self: Any, *a: Any, **kw: Any) -> None:
        original(self, *a, **kw)
        self.add_callback(StepProfile())

    Trainer.__init__ = init  # type: ignore[method-assign]


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]  # no shadowing by our scripts
    entry = sys.argv[1]
    sys.argv = sys.argv[1:]
    _install()
    runpy.run_path(entry, run_name="__main__")


if __name__ == "__main__":
    main()
