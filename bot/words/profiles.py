"""What the speed profile changed in a job's command, in words (the dry run, the job's thread, its web page).

`note_words` matches every kind of `ProfileNote` and ends in `assert_never`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_never

from bot.words.format import PLAIN, Format
from storage.profile_notes import (
    BatchSplit,
    CheckpointingOff,
    DirectStart,
    LegacyNote,
    LigerKernels,
    MicroBatchTokens,
    NoCudnnAttention,
    PaddingFree,
    ProfileNote,
    WarmStart,
)

HALF_A_MINUTE = "about half a minute less per job"


def notes_words(notes: Sequence[ProfileNote], fmt: Format = PLAIN) -> str:
    """Every note, one after the other ("" for none)."""
    return "; ".join(note_words(n, fmt) for n in notes)


def note_words(note: ProfileNote, fmt: Format = PLAIN) -> str:
    match note:
        case BatchSplit(micro=micro, steps=steps, gpus=gpus, samples=samples):
            across = "" if gpus == 1 else f" on each of {gpus} GPUs"
            return (
                f"per-device batch {micro} × accumulation {steps}{across} instead of 1 × {samples}: the same "
                f"{samples} samples, in the same order, make each optimizer step"
                + ("" if gpus == 1 else " (as on one GPU)")
            )
        case CheckpointingOff() as f:
            where = f"GPU {fmt.text(f.gpus[0])}" if len(f.gpus) == 1 else f"GPUs {fmt.text(','.join(f.gpus))}"
            return (
                f"gradient checkpointing off: {f.free_gib:.1f} GiB free on {where} covers the worst case "
                f"(~{f.need_gib:.0f} GiB with every sample at max_length {f.max_length})"
            )
        case LigerKernels():
            return "Liger fused kernels (RMSNorm, RoPE, SwiGLU, linear + cross-entropy without the full logits)"
        case PaddingFree():
            return (
                "padding-free micro-batches: each one's samples are laid end to end instead of padded to its "
                "longest (the fixed data's samples are 105-626 tokens: padded, a micro-batch of 8 holds ~1.75x "
                "the real tokens); attention stays within each sample (transformers masks the packed samples "
                "apart by their positions), so every step computes the same loss over the same tokens"
            )
        case MicroBatchTokens() as f:
            where = f"GPU {fmt.text(f.gpus[0])}" if len(f.gpus) == 1 else f"GPUs {fmt.text(','.join(f.gpus))}"
            return (
                f"micro-batches by tokens: each step's 16 samples, in the same order, in micro-batches of whole "
                f"samples of at most {f.budget} tokens, without gradient checkpointing ({f.free_gib:.1f} GiB "
                f"free on {where} covers any such micro-batch); the loss is still taken over each step's tokens "
                f"(where swift's process cannot do this, the layout above runs)"
            )
        case NoCudnnAttention():
            return (
                "attention by PyTorch's own kernels instead of cuDNN's, which prepares itself anew for every new "
                "sequence length (a micro-batch's length changes at every step): a sixth less time a step on an "
                "H200; the same attention, computed by another kernel"
            )
        case DirectStart(ranks=False):
            return (
                "starts training directly instead of through the swift wrapper, and exits as soon as training "
                f"is done: {HALF_A_MINUTE}"
            )
        case DirectStart():
            return (
                "starts one training process per GPU directly (torch.distributed.run, without the swift "
                "wrapper), and each leaves as soon as training is done; a stop still reaches every GPU's "
                f"process: {HALF_A_MINUTE}"
            )
        case WarmStart():
            return (
                "starts in a process that had swift loaded before the job came, when one is ready (the bot keeps "
                "one): about 15 s less before the first step on a GPU machine"
            )
        case LegacyNote(text=text):
            return fmt.text(text)
        case _:
            assert_never(note)
