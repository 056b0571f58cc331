"""Micro-batches by tokens (the `fast` profile's `token_micro_batches` lever, installed by runner/swift_levers.py):
each optimizer step's padding-free batch runs as micro-batches of at most a budget of tokens, split between samples.

Each micro-batch goes through the trainer's original training_step (forward, loss, backward) with the step's
`num_items_in_batch`: where the trainer scales the loss by it (its own rule, mirrored by `loss_is_per_step`), the
micro-batches' losses add up to the step's loss over its tokens, as one batch of them would; elsewhere each
micro-batch's mean is weighted by its share of the tokens, to the same sum. Only the padding-free batch swift makes
(one row, samples told apart by position ids starting at 0) is split, between samples; the gradients of the
micro-batches add up before the optimizer step.

Run inside swift's process (standard library only at import): what it prints goes to the job's log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def training_step_by_tokens(original: Callable[..., Any], budget: int) -> Callable[..., Any]:
    """transformers' Trainer.training_step(self, model, inputs, num_items_in_batch), running a batch of more than
    `budget` tokens as micro-batches through `original`."""
    told: set[str] = set()

    def training_step(self: Any, model: Any, inputs: Any, num_items_in_batch: Any = None) -> Any:
        pieces = split_packed(inputs, budget)
        if pieces is None:
            if isinstance(inputs, Mapping) and "unsplittable" not in told and tokens(inputs) > budget:
                told.add("unsplittable")
                print(
                    f"[trainbot] micro-batches by tokens: a step of {tokens(inputs)} tokens ran whole: its batch "
                    f"holds {sorted(inputs)}, which cannot be split between samples",
                    flush=True,
                )
            return original(self, model, inputs, num_items_in_batch)
        per_step = loss_is_per_step(self, num_items_in_batch)
        counts = [label_count(piece) for piece in pieces]
        loss = None
        for piece, count in zip(pieces, counts, strict=True):
            share = 1.0 if per_step else count / max(1, sum(counts))
            with _ScaledLoss(self, share):
                part = original(self, model, piece, num_items_in_batch)
            loss = part if loss is None else loss + part
        if "split" not in told:
            told.add("split")
            how = "the step's num_items_in_batch" if per_step else "the micro-batches weighted by their tokens"
            print(
                f"[trainbot] micro-batches by tokens: a step of {tokens(inputs)} tokens in {len(pieces)} "
                f"micro-batches; its loss over its tokens by {how}",
                flush=True,
            )
        return loss

    training_step.__wrapped__ = original  # type: ignore[attr-defined]
    return training_step


def loss_is_per_step(trainer: Any, num_items_in_batch: Any) -> bool:
    """Whether the trainer takes the loss as already divided by the step's token count (transformers'
    Trainer.training_step: then it does not divide it by the accumulation steps)."""
    scaled = getattr(trainer, "loss_is_scaled_for_ga", None)  # transformers >= 5.19 lets a trainer say so
    if scaled is not None:
        return bool(scaled)
    return bool(
        (getattr(trainer, "model_accepts_loss_kwargs", False) and num_items_in_batch is not None)
        or getattr(trainer, "compute_loss_func", None) is not None
    )


class _ScaledLoss:
    """The trainer's compute_loss multiplied by `share` while a micro-batch runs (1: left as it is)."""

    def __init__(self, trainer: Any, share: float) -> None:
        self.trainer, self.share = trainer, share

    def __enter__(self) -> None:
        if self.share != 1.0:
            compute_loss = type(self.trainer).compute_loss

            def scaled(*args: Any, **kwargs: Any) -> Any:
                result = compute_loss(self.trainer, *args, **kwargs)
                if isinstance(result, tuple):
                    return (result[0] * self.share, *result[1:])
                return result * self.share

            self.trainer.compute_loss = scaled

    def __exit__(self, *exc: object) -> None:
        if self.share != 1.0:
            del self.trainer.compute_loss


def tokens(inputs: Mapping[str, Any]) -> int:
    ids: Any = inputs.get("input_ids")
    return int(ids.shape[-1]) if hasattr(ids, "shape") else 0


def label_count(inputs: Mapping[str, Any]) -> int:
    """Tokens with a label, as transformers counts num_items_in_batch (the first of a row predicts nothing)."""
    labels = inputs.get("labels")
    return int((labels[..., 1:] != -100).sum()) if labels is not None else 0


def split_packed(inputs: Any, budget: int) -> list[dict[str, Any]] | None:
    """A padding-free batch (one row of samples, each starting at position 0) of more than `budget` tokens, as
    micro-batches of whole samples, in order, each of at most `budget` tokens (a longer sample alone); None where
    it fits, or is not such a batch (a value that is neither a row of tokens nor one item a sample)."""
    if not isinstance(inputs, Mapping):
        return None
    positions = inputs.get("position_ids")
    if positions is None or getattr(positions, "ndim", 0) != 2 or positions.shape[0] != 1:
        return None
    total = int(positions.shape[-1])
    if total <= budget:
        return None
    starts = [int(i) for i in (positions[0] == 0).nonzero().flatten().tolist()]
    if not starts or starts[0] != 0:
        return None
    bounds = [*starts, total]
    groups: list[tuple[int, int]] = []  # sample index ranges
    first = 0
    for i in range(1, len(starts) + 1):
        if bounds[i] - bounds[first] > budget and i - 1 > first:
            groups.append((first, i - 1))
            first = i - 1
    groups.append((first, len(starts)))
    if len(groups) == 1:
        return None
    pieces: list[dict[str, Any]] = [{} for _ in groups]
    for key, value in inputs.items():
        for piece, (a, b) in zip(pieces, groups, strict=True):
            if value is None:
                piece[key] = None
            elif getattr(value, "ndim", 0) >= 2 and value.shape[0] == 1 and value.shape[-1] == total:
                piece[key] = value[..., bounds[a] : bounds[b]]
            elif isinstance(value, list | tuple) and len(value) == len(starts):
                piece[key] = value[a:b]
            else:
                return None
    return pieces
