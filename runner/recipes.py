"""The recipes: the seed's fixed LLM recipe, value for value, and the VLM recipe with its user-overridable keys.

This file is the one place for these values. The config file may change them (the seed's "config file support"),
e.g. to point the model and datasets at local mirrors; users in Slack may override only VLM_USER_KEYS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from storage.models import Kind

ArgValue = str | tuple[str, ...]
OUTPUT_DIR = "{output_dir}"  # filled in with the job's output dir by the command builder

# The seed's command, flag for flag and in its order (`train_type` is renamed for ms-swift 4.x by the builder).
LLM_ARGS: tuple[tuple[str, ArgValue], ...] = (
    ("model", "Qwen/Qwen2.5-7B-Instruct"),
    ("train_type", "lora"),
    (
        "dataset",
        (
            "AI-ModelScope/alpaca-gpt4-data-zh#500",
            "AI-ModelScope/alpaca-gpt4-data-en#500",
            "swift/self-cognition#500",
        ),
    ),
    ("torch_dtype", "bfloat16"),
    ("num_train_epochs", "1"),
    ("per_device_train_batch_size", "1"),
    ("per_device_eval_batch_size", "1"),
    ("learning_rate", "1e-4"),
    ("lora_rank", "8"),
    ("lora_alpha", "32"),
    ("target_modules", "all-linear"),
    ("gradient_accumulation_steps", "16"),
    ("eval_steps", "50"),
    ("save_steps", "50"),
    ("save_total_limit", "2"),
    ("logging_steps", "5"),
    ("max_length", "2048"),
    ("output_dir", OUTPUT_DIR),
    ("system", "You are a helpful assistant."),  # machine text: the model's system prompt (the seed's)
    ("warmup_ratio", "0.05"),
    ("dataloader_num_workers", "4"),
    ("model_author", "swift"),
    ("model_name", "swift-robot"),
)

# What `/train try <job>` asks without a question, of the fine-tuned and of the base model side by side: the
# self-cognition data (`model_name`/`model_author`) taught the LLM recipe who it is. The VLM recipe has none.
CHECK_QUESTIONS: dict[Kind, tuple[str, ...]] = {
    Kind.LLM: ("你是谁？", "Who are you?"),  # machine text: asked of the model (the self-cognition data's question)
    Kind.VLM: (),
}

# Qwen2.5-VL: the same LoRA training as the fixed recipe, on the VL model and data, with the vision tower frozen;
# no system prompt or self-cognition identity (those belong to the LLM recipe's datasets).
_VLM_CHANGES: dict[str, ArgValue | None] = {
    "model": "Qwen/Qwen2.5-VL-7B-Instruct",
    "dataset": ("AI-ModelScope/LaTeX_OCR#2000",),
    "system": None,
    "model_author": None,
    "model_name": None,
}


def _vlm_args() -> tuple[tuple[str, ArgValue], ...]:
    args: list[tuple[str, ArgValue]] = []
    for key, value in LLM_ARGS:
        changed = _VLM_CHANGES.get(key, value)
        if changed is not None:
            args.append((key, changed))
        if key == "target_modules":
            args.append(("freeze_vit", "true"))
    return tuple(args)


VLM_ARGS = _vlm_args()
VLM_ENV: tuple[tuple[str, str], ...] = (("MAX_PIXELS", "1003520"),)

# What a user may set on `/train vlm`: key -> the swift flags (or env var) it sets.
VLM_USER_KEYS: dict[str, tuple[str, ...]] = {
    "model": ("model",),
    "dataset": ("dataset",),
    "epochs": ("num_train_epochs",),
    "learning_rate": ("learning_rate",),
    "lora_rank": ("lora_rank",),
    "lora_alpha": ("lora_alpha",),
    "max_length": ("max_length",),
    "batch_size": ("per_device_train_batch_size", "per_device_eval_batch_size"),
    "max_pixels": ("env:MAX_PIXELS",),
}


@dataclass(frozen=True)
class Recipe:
    """A resolved recipe: ordered swift flags (without the leading --) and the environment it needs."""

    kind: Kind
    args: tuple[tuple[str, ArgValue], ...]
    env: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = field(default=())

    def value(self, key: str) -> ArgValue | None:
        return dict(self.args).get(key)

    def with_args(self, changes: Mapping[str, ArgValue | None]) -> Recipe:
        """Replace values in place (keeping the seed's order), append new flags, drop those set to None."""
        merged = dict(self.args)
        for key, value in changes.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return Recipe(self.kind, tuple(merged.items()), self.env, self.notes)

    def with_env(self, changes: Mapping[str, str]) -> Recipe:
        return Recipe(self.kind, self.args, tuple((dict(self.env) | dict(changes)).items()), self.notes)


def base_recipe(kind: Kind) -> Recipe:
    if kind is Kind.LLM:
        return Recipe(Kind.LLM, LLM_ARGS)
    return Recipe(Kind.VLM, VLM_ARGS, VLM_ENV)


def apply_user_overrides(recipe: Recipe, overrides: Mapping[str, str]) -> Recipe:
    """Apply `/train vlm key=value` overrides (already validated by the grammar) to a VLM recipe."""
    args: dict[str, ArgValue | None] = {}
    env: dict[str, str] = {}
    for key, value in overrides.items():
        for target in VLM_USER_KEYS[key]:
            if target.startswith("env:"):
                env[target[4:]] = value
            elif target == "dataset":
                args[target] = tuple(v.strip() for v in value.split(",") if v.strip())
            else:
                args[target] = value
    return recipe.with_args(args).with_env(env)
