"""Speed profiles: how the fixed recipe's steps are computed, never what it learns.

`exact` runs the seed's flags as they are. `fast` (the default) may change only how each optimizer step is
computed (micro-batch vs accumulation at the same 16 samples a step, gradient checkpointing, fused kernels,
padding-free micro-batches, micro-batches by tokens, attention without cuDNN's kernel), and only on GPUs that NVML
reports with room for it (the last three only for jobs started through runner/swift_entry.py); every change comes
back as a note shown in the dry run and the job's thread. The learning stays the seed's: same data in the same
order, 16 samples an optimizer step (also over several GPUs), lr 1e-4, warmup 0.05, LoRA r8/alpha 32 on all linear
layers, max length 2048, bf16, 1 epoch.

Memory is budgeted for the worst case the recipe allows (every sample of a micro-batch at max_length, or a
micro-batch's most tokens), so a fast job cannot run out of memory where the literal one would not. The figures
are measured on an H100 80GB with the 7B recipe (docs/gpu.md); they hold for the fixed recipe's model (Qwen2.5-7B
shape), which is what `llm` runs.
"""

from __future__ import annotations

import functools
import glob
import math
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.child_env import child_env
from runner.gpus import Gpu
from runner.recipes import Recipe
from runner.swift_levers import MICRO_BATCH_TOKENS, NO_CUDNN_ATTENTION
from runner.swift_version import SwiftNotFound, interpreter_of, resolve_swift
from storage.models import Kind
from storage.profile_notes import (
    BatchSplit,
    CheckpointingOff,
    LigerKernels,
    MicroBatchTokens,
    NoCudnnAttention,
    PaddingFree,
    ProfileNote,
)

PROFILES = ("fast", "exact")
SAMPLES_PER_STEP = 16  # the seed's per_device_train_batch_size 1 x gradient_accumulation_steps 16
MARGIN_GIB = 2.0  # kept free beyond the budget: allocator fragmentation, NCCL buffers, the odd extra kernel
BASE_GIB = 15.5  # the 7B's weights, LoRA state and CUDA workspaces (torch's peak reserved on the H100)


@dataclass(frozen=True)
class Layout:
    """One way to compute an optimizer step on each GPU, with its worst-case peak memory per GPU (GiB):
    base + per_token * micro_batch * max_length (from torch's peak reserved memory on the H100, docs/gpu.md)."""

    micro_batch: int
    checkpointing: bool
    liger: bool
    base_gib: float
    per_token_mib: float

    def need_gib(self, micro_batch: int, max_length: int) -> float:
        return self.base_gib + self.per_token_mib * micro_batch * max_length / 1024


# Fastest first, by what the H100 measured (docs/gpu.md: seconds per optimizer step once warm; "est." where only
# estimated). The first layout, over whole jobs on the H200: 0.83 and 0.99 s a step on two machines (5.2x and
# 5.1x faster than the literal job, launch to end, with the direct start of runner/swift_entry.py). Peak reserved
# memory: 15.5 GiB for the 7B weights, LoRA state and CUDA workspaces, plus per token of the largest micro-batch
# 6.8 MiB without checkpointing (Liger), 0.7 MiB with checkpointing (Liger), 4.0 MiB with checkpointing without
# Liger (the full logits and their float32 copies). Left out because a listed layout is both faster and smaller:
# 4 x 4 without checkpointing (Liger; 1.73 s, 70 GiB, measured over the whole job: every micro-batch costs ~0.4 s
# of Python and kernel launches on that host) and anything without checkpointing or Liger
# (~12 MiB a token: no micro-batch above 2 fits 80 GB at max_length).
LAYOUTS: tuple[Layout, ...] = (
    Layout(micro_batch=8, checkpointing=False, liger=True, base_gib=BASE_GIB, per_token_mib=6.8),  # 1.04 s, 124 GiB
    Layout(micro_batch=16, checkpointing=True, liger=True, base_gib=BASE_GIB, per_token_mib=0.7),  # 1.28 s, 38 GiB
    Layout(micro_batch=16, checkpointing=True, liger=False, base_gib=BASE_GIB, per_token_mib=4.0),  # 1.44 s, 144 GiB
    Layout(micro_batch=8, checkpointing=True, liger=True, base_gib=BASE_GIB, per_token_mib=0.7),  # est. 1.4 s, 27 GiB
    Layout(micro_batch=8, checkpointing=True, liger=False, base_gib=BASE_GIB, per_token_mib=4.0),  # est. 1.6 s, 80 GiB
    Layout(micro_batch=4, checkpointing=True, liger=True, base_gib=BASE_GIB, per_token_mib=0.7),  # est. 2 s, 21 GiB
    Layout(micro_batch=4, checkpointing=True, liger=False, base_gib=BASE_GIB, per_token_mib=4.0),  # est. 2 s, 48 GiB
    Layout(micro_batch=2, checkpointing=True, liger=False, base_gib=BASE_GIB, per_token_mib=4.0),  # est. 3.5 s, 32 GiB
)


def free_gib(gpu: Gpu) -> float | None:
    if gpu.memory_total_mib is None or gpu.memory_used_mib is None:
        return None
    return (gpu.memory_total_mib - gpu.memory_used_mib - (gpu.memory_reserved_mib or 0.0)) / 1024


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _is_on(value: object) -> bool:
    return str(value).lower() in ("true", "1", "yes")


def choose_layout(n_gpus: int, free: float, max_length: int, *, liger: bool) -> tuple[Layout, int] | None:
    """The fastest layout (and its micro-batch, capped so n_gpus x micro-batch divides 16) whose worst case fits
    in `free` GiB, the least free memory among the GPUs; None when none does (the seed's flags then run as they are).
    """
    for layout in LAYOUTS:
        if layout.liger and not liger:
            continue
        micro = min(layout.micro_batch, SAMPLES_PER_STEP // n_gpus)
        if micro < 1 or SAMPLES_PER_STEP % (micro * n_gpus):
            continue
        if layout.need_gib(micro, max_length) + MARGIN_GIB <= free:
            return layout, micro
    return None


# Padding-free is back in `fast` since cuDNN's attention went off (without_cudnn_attention): the step is no longer
# bound by the host's attention plan building, the H200 is busy 85% of a step (docs/gpu.md), so the padding (1.75x
# the real tokens at 8 a micro-batch on the fixed data) costs GPU time again: 0.78 -> 0.63 s a step on the H200,
# 15 GB less memory, every logged loss within 0.042% of the literal job's (docs/gpu.md, 2026-12-01).
# bot/words/profiles.py tells people what each note means.
PADDING_FREE_NOTE = PaddingFree()


# Micro-batches by tokens (issue 31): with padding-free micro-batches, memory follows the tokens in a micro-batch,
# not micro-batch x max_length. Where the layout chosen above needs gradient checkpointing (an H100: 16 x 1 with it,
# because 8 x 2 without it needs 124 GiB at max_length), each step's 16 samples can instead run without it, in
# micro-batches of whole samples under a token budget (the fixed data: 4,450 tokens a step on average, at most
# ~6,500: one micro-batch a step on an H100). Without checkpointing autograd keeps 6.8 MiB a token with Liger (12
# without: the full logits); a padding-free micro-batch of T tokens on sdpa also keeps, for each of the 7B's 28
# layers, its packed attention mask as a bf16 T x T bias for the backward pass (PyTorch's memory-efficient kernel
# takes a float bias). The budget holds for any micro-batch, so one sample at max_length must fit it.
NO_CHECKPOINTING_MIB = {True: 6.8, False: 12.0}  # a token, with Liger / without
MASK_BYTES = 28 * 2  # a token squared: 28 layers, a bf16 bias each


def token_budget(free: float, liger: bool) -> int:
    """The most tokens a micro-batch without checkpointing may hold in `free` GiB (0: none)."""
    room = free - BASE_GIB - MARGIN_GIB
    if room <= 0:
        return 0
    per_token, per_square = NO_CHECKPOINTING_MIB[liger] / 1024, MASK_BYTES / 2**30
    return int((math.sqrt(per_token**2 + 4 * per_square * room) - per_token) / (2 * per_square))


def apply_profile(
    recipe: Recipe, profile: str, gpus: Sequence[Gpu], *, liger: bool = False, packed: bool = False
) -> tuple[Recipe, tuple[ProfileNote, ...]]:
    """The recipe to run for this profile on these GPUs (NVML-probed; empty where unknown), and what changed.

    `liger`: the swift that runs has liger-kernel installed (ms-swift does not depend on it). `packed`: the job
    may run padding-free on sdpa attention (its transformers masks packed samples apart, and the job starts through
    runner/swift_entry.py, which lets swift accept that without flash-attn).
    """
    if profile == "exact" or recipe.kind is not Kind.LLM or not gpus:
        return recipe, ()
    n = len(gpus)
    per_device = _int(recipe.value("per_device_train_batch_size"))
    accumulation = _int(recipe.value("gradient_accumulation_steps"))
    max_length = _int(recipe.value("max_length"))
    frees = [free_gib(g) for g in gpus]
    if per_device is None or accumulation is None or max_length is None or None in frees:
        return recipe, ()
    if per_device * accumulation != SAMPLES_PER_STEP or SAMPLES_PER_STEP % n:
        return recipe, ()  # a config changed the step size, or 16 samples cannot be split evenly over these GPUs
    free = min(f for f in frees if f is not None)
    has_liger = _is_on(recipe.value("use_liger_kernel"))  # a config may already turn it on
    chosen = choose_layout(n, free, max_length, liger=liger or has_liger)
    if chosen is None and n == 1:
        return recipe, ()
    layout, micro = chosen or (None, 1)  # several GPUs without room for more: still 16 samples a step in all
    steps = SAMPLES_PER_STEP // (micro * n)
    changes: dict[str, str] = {"per_device_train_batch_size": str(micro), "gradient_accumulation_steps": str(steps)}
    notes: list[ProfileNote] = [BatchSplit(micro, steps, n, SAMPLES_PER_STEP)]
    if layout is None:
        return recipe.with_args(changes), tuple(notes)
    need = layout.need_gib(micro, max_length)
    if not layout.checkpointing:
        changes["gradient_checkpointing"] = "false"
        notes.append(CheckpointingOff(round(free, 1), tuple(g.index for g in gpus), round(need, 1), max_length))
    if layout.liger and not has_liger:
        changes["use_liger_kernel"] = "true"
        notes.append(LigerKernels())
    if (
        packed
        and micro > 1
        and recipe.value("attn_impl") in (None, "sdpa")
        and not _is_on(recipe.value("padding_free"))
        and not _is_on(recipe.value("packing"))
    ):
        changes |= {"padding_free": "true", "attn_impl": "sdpa"}
        notes.append(PADDING_FREE_NOTE)
        budget = token_budget(free, layout.liger or has_liger)
        if n == 1 and layout.checkpointing and budget >= max_length:
            notes.append(MicroBatchTokens(budget, round(free, 1), tuple(g.index for g in gpus)))
            return recipe.with_args(changes).with_env({MICRO_BATCH_TOKENS: str(budget)}), tuple(notes)
    return recipe.with_args(changes), tuple(notes)


# The H200 (docs/gpu.md, one lease): 0.87 -> 0.72 s a step, launch to end 106.0 -> 92.3 s, losses within 0.011%.
NO_CUDNN_NOTE = NoCudnnAttention()


def without_cudnn_attention(
    recipe: Recipe, profile: str, gpus: Sequence[Gpu], *, direct: bool
) -> tuple[Recipe, tuple[ProfileNote, ...]]:
    """`fast` on NVML-known GPUs, started through runner/swift_entry.py (`direct`: the entry reads the variable,
    `swift sft` would not): scaled_dot_product_attention without cuDNN's kernel."""
    if profile == "exact" or recipe.kind is not Kind.LLM or not gpus or not direct:
        return recipe, ()
    return recipe.with_env({NO_CUDNN_ATTENTION: "1"}), (NO_CUDNN_NOTE,)


@dataclass(frozen=True)
class SwiftSite:
    """What the python that runs swift can import that the `fast` profile uses."""

    liger: bool = False  # liger-kernel (ms-swift does not depend on it)
    packed_sdpa: bool = False  # a transformers that masks packed samples apart on sdpa (padding-free, no flash-attn)


PACKED_MASKS = "def find_packed_sequence_indices"  # transformers/masking_utils.py: samples told apart by position
_SITE_CODE = (
    "import importlib.util as u, pathlib as p\n"
    "t = u.find_spec('transformers')\n"
    "m = p.Path(t.origin).parent / 'masking_utils.py' if t and t.origin else None\n"
    f"print(int(u.find_spec('liger_kernel') is not None), int(bool(m and m.is_file() and {PACKED_MASKS!r} in "
    "m.read_text())))\n"
)


def swift_site(swift_bin: str) -> SwiftSite:
    """What the python that runs `swift_bin` has (read from its site-packages, else asked in one process)."""
    try:
        path = resolve_swift(swift_bin)
        return _site_cached(str(path), path.stat().st_mtime)
    except (SwiftNotFound, OSError):
        return SwiftSite()


@functools.lru_cache(maxsize=8)
def _site_cached(path: str, _mtime: float) -> SwiftSite:
    prefix = Path(path).parent.parent  # <venv>/bin/swift -> <venv>
    site = glob.glob(str(prefix / "lib" / "python*" / "site-packages"))
    masking = [Path(s) / "transformers" / "masking_utils.py" for s in site]
    if any(m.is_file() for m in masking):
        return SwiftSite(
            liger=any(glob.glob(str(Path(s) / "liger_kernel-*.dist-info")) for s in site),
            packed_sdpa=any(m.is_file() and PACKED_MASKS in m.read_text() for m in masking),
        )
    interpreter = interpreter_of(Path(path))
    if interpreter is None:
        return SwiftSite()
    try:
        done = subprocess.run(
            [*interpreter, "-c", _SITE_CODE],
            capture_output=True,
            text=True,
            timeout=30,
            env=child_env(None, {"PYTHONNOUSERSITE": "1"}),
        )
    except (OSError, subprocess.TimeoutExpired):
        return SwiftSite()
    answer = done.stdout.split()
    if done.returncode != 0 or len(answer) != 2:
        return SwiftSite()
    return SwiftSite(liger=answer[0] == "1", packed_sdpa=answer[1] == "1")
