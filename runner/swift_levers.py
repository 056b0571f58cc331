"""The `fast` profile's levers inside swift's process: each checks that what it reaches into is there, or leaves the
job on the plain path and says so.

Run by swift's python through runner/swift_entry.py (standard library only at import; torch, transformers and swift
are imported when a lever is applied, which swift's own script would import anyway). Each lever reaches into
swift's, transformers' or torch's internals by name. It first checks that every name it needs is there (and, where
it matters, the signature it relies on), and only then changes anything. Where something is missing (another
version), the job goes on without it, on the path swift takes by itself, and the log says so in one line:

    [trainbot] <what> not applied (<lever>): <what was not as expected>; <what runs instead>

which runner/levers.py reads back as a typed fact for the job's thread. A lever never fails a job.

- `no_cudnn_attention`: scaled_dot_product_attention without cuDNN's kernel (runner/profiles.py, NO_CUDNN_NOTE).
- `padding_free_sdpa`: swift's padding-free check lets sdpa pass where transformers masks packed samples apart;
  without it the job runs padded micro-batches (`--padding_free false`).
- `token_micro_batches`: each optimizer step's samples in micro-batches under a token budget, without gradient
  checkpointing (runner/profiles.py, MicroBatchTokens); without it the layout the profile chose runs.
- `shards_together`: an export writes its shards a thread each; without it transformers writes them one by one.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# Set by the `fast` profile (runner/profiles.py): scaled_dot_product_attention without cuDNN's kernel, which builds
# an execution plan for every new sequence length (a padded micro-batch's length changes at every step): ~8 ms of
# host time per layer and micro-batch on the H200 (torch.profiler, docs/gpu.md). PyTorch then takes its own
# flash or memory-efficient kernel: the same attention, by another kernel.
NO_CUDNN_ATTENTION = "TRAINBOT_NO_CUDNN_ATTENTION"
# Set by the `fast` profile: the most tokens a micro-batch may hold (token_micro_batches).
MICRO_BATCH_TOKENS = "TRAINBOT_MICRO_BATCH_TOKENS"
# Where Triton keeps the kernels it compiled (Liger's): the `fast` profile points every job at one folder under the
# data dir, filled ahead of the first job (runner/compile_kernels.py).
TRITON_CACHE_DIR = "TRITON_CACHE_DIR"
NOT_APPLIED = "not applied"  # the word runner/levers.py looks for, in the line format above
LEVERS = ("no_cudnn_attention", "padding_free_sdpa", "token_micro_batches", "shards_together", "warm_start")


class Missing(Exception):
    """What a lever needs is not as it expects: `what` names it (a dotted name, a signature)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def not_applied_line(what: str, lever: str, why: str, instead: str) -> str:
    return f"[trainbot] {what} {NOT_APPLIED} ({lever}): {why}; {instead}"


def apply(script: str, argv: list[str], environ: Mapping[str, str]) -> list[str]:
    """Apply what the job's command and environment ask for; the command to run (a lever that cannot apply may
    turn a flag back to its plain value)."""
    argv = list(argv)
    if environ.get(NO_CUDNN_ATTENTION) == "1":
        _lever(
            "no_cudnn_attention", "attention without cuDNN's kernel", "cuDNN's attention stays on", _no_cudnn_attention
        )
    packed = flag(argv, "--padding_free") == "true" and flag(argv, "--attn_impl") == "sdpa"
    if packed and not _lever(
        "padding_free_sdpa",
        "padding-free micro-batches on sdpa",
        "micro-batches padded to their longest sample instead",
        _allow_padding_free_on_sdpa,
    ):
        argv += ["--padding_free", "false"]
        packed = False
    budget = environ.get(MICRO_BATCH_TOKENS)
    if script == "sft" and budget:
        what, instead = "micro-batches by tokens", "the micro-batches and checkpointing of the command as it is"
        if not packed:
            print(
                not_applied_line(what, "token_micro_batches", "they need padding-free micro-batches", instead),
                flush=True,
            )
        elif _lever("token_micro_batches", what, instead, lambda: _split_steps_by_tokens(int(budget))):
            samples = int(flag(argv, "--per_device_train_batch_size") or 1) * int(
                flag(argv, "--gradient_accumulation_steps") or 1
            )
            argv += [
                "--per_device_train_batch_size",
                str(samples),
                "--gradient_accumulation_steps",
                "1",
                "--gradient_checkpointing",
                "false",
            ]
            print(
                f"[trainbot] micro-batches by tokens: each step's {samples} samples, in order, in micro-batches of "
                f"at most {int(budget)} tokens (split between samples), without gradient checkpointing",
                flush=True,
            )
    if script == "export":
        _lever(
            "shards_together",
            "shards written together",
            "transformers writes them one after the other",
            _write_shards_together,
        )
    return argv


def _lever(lever: str, what: str, instead: str, install: Callable[[], None]) -> bool:
    """Install one lever; False (and the line that says so) where what it needs is missing or its setup failed."""
    try:
        install()
    except Missing as exc:
        print(not_applied_line(what, lever, exc.what, instead), flush=True)
        return False
    except Exception as exc:  # a lever's setup never fails the job (an import error, a changed API)
        print(not_applied_line(what, lever, f"{type(exc).__name__}: {exc}", instead), flush=True)
        return False
    return True


def flag(argv: Sequence[str], name: str) -> str | None:
    """The value given to `name` (the last one, as argparse reads it), lower-cased."""
    values = [argv[i + 1].lower() for i, arg in enumerate(argv[:-1]) if arg == name]
    return values[-1] if values else None


def need(owner: Any, name: str, where: str) -> Any:
    """`owner.name`, or Missing naming `where.name`."""
    found = getattr(owner, name, None)
    if found is None:
        raise Missing(f"{where} has no {name}")
    return found


def need_parameters(function: Any, names: Sequence[str], where: str) -> None:
    """`function` takes these parameters first, in this order (Missing otherwise)."""
    try:
        have = list(inspect.signature(function).parameters)
    except (TypeError, ValueError) as exc:
        raise Missing(f"{where}'s signature cannot be read") from exc
    if have[: len(names)] != list(names):
        raise Missing(f"{where} takes ({', '.join(have)}), not ({', '.join(names)}, ...)")


def _no_cudnn_attention() -> None:
    torch = importlib.import_module("torch")  # swift imports it first thing anyway
    switch = need(torch.backends.cuda, "enable_cudnn_sdp", "torch.backends.cuda")
    switch(False)
    print("[trainbot] attention: cuDNN's kernel off (no execution plan built per sequence length)", flush=True)


def _allow_padding_free_on_sdpa() -> None:
    """swift's padding-free check lets sdpa pass, where transformers masks packed samples apart (by their position
    ids): without that mask, packed samples would attend to each other, so both names must be there."""
    masking_utils = importlib.import_module("transformers.masking_utils")
    need(masking_utils, "find_packed_sequence_indices", "transformers.masking_utils")
    sft_args = importlib.import_module("swift.arguments.sft_args")
    arguments = need(sft_args, "SftArguments", "swift.arguments.sft_args")
    check = need(arguments, "_check_padding_free", "swift.arguments.sft_args.SftArguments")
    need_parameters(check, ["self"], "SftArguments._check_padding_free")

    def check_but_sdpa(args: Any) -> None:
        if not (args.padding_free and not args.packing and args.attn_impl == "sdpa"):
            check(args)

    arguments._check_padding_free = check_but_sdpa
    print("[trainbot] padding-free batches on sdpa attention: transformers masks the packed samples apart", flush=True)


# ---- micro-batches by tokens ---------------------------------------------------------------------------------


def _split_steps_by_tokens(budget: int) -> None:
    """transformers' Trainer.training_step (every trainer's, swift's calls it through super()) runs a step's batch
    as micro-batches of at most `budget` tokens where it holds more. Each micro-batch goes through the original
    training_step (forward, loss, backward) with the step's `num_items_in_batch`: where the trainer scales the loss
    by it (its own rule, mirrored by `loss_is_per_step`), the micro-batches' losses add up to the step's loss over
    its tokens, as one batch of them would; elsewhere each micro-batch's mean is weighted by its share of the tokens,
    to the same sum. Only the padding-free batch swift makes (one row, samples told apart by position ids starting
    at 0) is split, between samples; the gradients of the micro-batches add up before the optimizer step."""
    if budget < 1:
        raise Missing(f"{MICRO_BATCH_TOKENS}={budget} is not a number of tokens")
    trainer_module = importlib.import_module("transformers.trainer")
    trainer = need(trainer_module, "Trainer", "transformers.trainer")
    original = need(trainer, "training_step", "transformers.Trainer")
    need_parameters(original, ["self", "model", "inputs", "num_items_in_batch"], "transformers.Trainer.training_step")
    if not (hasattr(trainer, "_get_num_items_in_batch") or hasattr(trainer, "get_batch_samples")):
        raise Missing("transformers.Trainer counts no num_items_in_batch per step")
    need(trainer, "compute_loss", "transformers.Trainer")
    told: set[str] = set()

    def training_step(self: Any, model: Any, inputs: Any, num_items_in_batch: Any = None) -> Any:
        pieces = split_packed(inputs, budget)
        if pieces is None:
            if isinstance(inputs, Mapping) and "unsplittable" not in told and _tokens(inputs) > budget:
                told.add("unsplittable")
                print(
                    f"[trainbot] micro-batches by tokens: a step of {_tokens(inputs)} tokens ran whole: its batch "
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
                f"[trainbot] micro-batches by tokens: a step of {_tokens(inputs)} tokens in {len(pieces)} "
                f"micro-batches; its loss over its tokens by {how}",
                flush=True,
            )
        return loss

    training_step.__wrapped__ = original  # type: ignore[attr-defined]
    trainer.training_step = training_step


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


def _tokens(inputs: Mapping[str, Any]) -> int:
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


# ---- an export's shards, together ----------------------------------------------------------------------------


def _write_shards_together() -> None:
    """transformers' save_pretrained (swift export's save) writes a model's shards one after the other, each through
    safetensors, which copies every tensor off the GPU and writes it holding the GIL: 19 s for the 7B's 15.2 GB
    on the H200 (docs/gpu.md). Here each shard has a thread of its own (copies and writes release the GIL), and
    save_pretrained returns once every shard is written, or raises what a write raised. The files are byte for
    byte what safetensors writes (tests/test_swift_entry.py). It replaces the module's `safe_save_file` during
    the save, so that name, its signature and save_pretrained's call of it must be as expected."""
    from concurrent.futures import Future, ThreadPoolExecutor

    modeling_utils: Any = importlib.import_module("transformers.modeling_utils")
    model_class = need(modeling_utils, "PreTrainedModel", "transformers.modeling_utils")
    save_pretrained = need(model_class, "save_pretrained", "transformers.PreTrainedModel")
    one_at_a_time = need(modeling_utils, "safe_save_file", "transformers.modeling_utils")
    need_parameters(one_at_a_time, ["tensors", "filename", "metadata"], "transformers.modeling_utils.safe_save_file")
    try:
        calls = "safe_save_file(" in inspect.getsource(save_pretrained)
    except (OSError, TypeError) as exc:
        raise Missing("transformers.PreTrainedModel.save_pretrained's source cannot be read") from exc
    if not calls:
        raise Missing("transformers.PreTrainedModel.save_pretrained does not call safe_save_file")

    def save_together(self: Any, *args: Any, **kwargs: Any) -> Any:
        began = time.monotonic()
        shards: list[tuple[str, Future[None]]] = []
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="shard") as pool:
            modeling_utils.safe_save_file = lambda tensors, filename, metadata=None: shards.append(
                (str(filename), pool.submit(write_safetensors, tensors, str(filename), metadata))
            )
            try:
                result = save_pretrained(self, *args, **kwargs)
            finally:
                modeling_utils.safe_save_file = one_at_a_time
        for _, shard in shards:
            shard.result()
        if shards:
            size = sum(os.path.getsize(path) for path, _ in shards) / 1e9
            print(
                f"[trainbot] {len(shards)} shard(s), {size:.2f} GB, written together in "
                f"{time.monotonic() - began:.1f} s",
                flush=True,
            )
        return result

    model_class.save_pretrained = save_together


# safetensors' dtype names, in the order of its Rust enum: a file lists its tensors by dtype (this order, last
# first), then by name, as safetensors.torch.save_file writes them.
SAFETENSORS_DTYPES = (
    ("bool", "BOOL"),
    ("uint8", "U8"),
    ("int8", "I8"),
    ("float8_e5m2", "F8_E5M2"),
    ("float8_e4m3fn", "F8_E4M3"),
    ("int16", "I16"),
    ("uint16", "U16"),
    ("float16", "F16"),
    ("bfloat16", "BF16"),
    ("int32", "I32"),
    ("uint32", "U32"),
    ("float32", "F32"),
    ("complex64", "C64"),
    ("float64", "F64"),
    ("int64", "I64"),
    ("uint64", "U64"),
)


STAGING_BYTES = 64 << 20  # a shard's writer's pinned buffer for tensors on the GPU


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
        header[key] = {
            "dtype": names[kinds[key]],
            "shape": list(tensors[key].shape),
            "data_offsets": [offset, offset + size],
        }
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
                chunk = staging[: min(STAGING_BYTES, data.numel() - start)]
                chunk.copy_(data[start : start + chunk.numel()])
                out.write(chunk.numpy().data)
