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
  checkpointing (runner/profiles.py, MicroBatchTokens); without it the layout the profile chose runs. The split
  itself is runner/token_batches.py.
- `shards_together`: an export writes its shards a thread each (runner/safetensors_writer.py); without it
  transformers writes them one by one.
"""

from __future__ import annotations

import importlib
import inspect
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING or __package__:  # imported as runner.swift_levers (the bot, tests, runner.swift_entry)
    from runner import safetensors_writer, token_batches
else:  # loaded from its file by runner/swift_entry.py run as a script, which loads these two first (LEVER_PARTS)
    import trainbot_safetensors_writer as safetensors_writer
    import trainbot_token_batches as token_batches

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
    as micro-batches of at most `budget` tokens where it holds more (runner/token_batches.py); what it wraps must
    take the step's `num_items_in_batch`."""
    if budget < 1:
        raise Missing(f"{MICRO_BATCH_TOKENS}={budget} is not a number of tokens")
    trainer_module = importlib.import_module("transformers.trainer")
    trainer = need(trainer_module, "Trainer", "transformers.trainer")
    original = need(trainer, "training_step", "transformers.Trainer")
    need_parameters(original, ["self", "model", "inputs", "num_items_in_batch"], "transformers.Trainer.training_step")
    if not (hasattr(trainer, "_get_num_items_in_batch") or hasattr(trainer, "get_batch_samples")):
        raise Missing("transformers.Trainer counts no num_items_in_batch per step")
    need(trainer, "compute_loss", "transformers.Trainer")
    trainer.training_step = token_batches.training_step_by_tokens(original, budget)


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
                (str(filename), pool.submit(safetensors_writer.write_safetensors, tensors, str(filename), metadata))
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
