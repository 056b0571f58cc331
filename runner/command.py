"""Turning a recipe into the argv that runs (a list, never a shell string), for the ms-swift version at hand."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner import swift_entry
from runner.config import Config
from runner.recipes import OUTPUT_DIR, Recipe, apply_user_overrides, base_recipe
from runner.swift_version import RENAMED, SwiftNotFound, SwiftVersion, interpreter_of, resolve_swift
from storage.models import Kind

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@dataclass(frozen=True)
class SwiftCommand:
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)

    def display(self) -> str:
        """How a person would type it: env assignments first, each value quoted as a shell would need."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        return (env + " " if env else "") + shlex.join(self.argv)


def flag_name(key: str, version: SwiftVersion) -> str:
    for major in sorted(RENAMED):
        if version.major >= major:
            key = RENAMED[major].get(key, key)
    return key


def resolve_recipe(kind: Kind, config: Config, overrides: Mapping[str, str] | None = None) -> Recipe:
    """The seed's recipe, changed by the config file, then by what the user may override (VLM only)."""
    table = config.llm if kind is Kind.LLM else config.vlm
    recipe = base_recipe(kind).with_args(table.changes).with_env(table.env)
    if overrides:
        recipe = apply_user_overrides(recipe, overrides)
    return recipe


def build_sft(
    recipe: Recipe, *, output_dir: Path, config: Config, version: SwiftVersion, entry: Sequence[str] | None = None
) -> SwiftCommand:
    """`swift sft <flags>`, or `<entry> sft <flags>` where `entry` (see `direct_entry`) starts swift's sft itself."""
    argv = [*(entry or [config.swift_bin]), "sft"]
    args = dict(recipe.args)
    if config.offline and _is_local_path(args.get("model")):
        args.setdefault("check_model", "false")  # else modelscope asks the hub about a local folder
    for key, value in args.items():
        argv.append(f"--{flag_name(key, version)}")
        if isinstance(value, tuple):
            argv.extend(value)
        else:
            argv.append(str(output_dir) if value == OUTPUT_DIR else value)
    return SwiftCommand(tuple(argv), swift_env(config, dict(recipe.env)))


def swift_env(config: Config, recipe_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A swift process's variables: the hub switched off when offline, the recipe's, then `[swift] env`."""
    return (OFFLINE_ENV if config.offline else {}) | dict(recipe_env or {}) | dict(config.swift_env)


def direct_entry(swift_bin: str, processes: int = 1) -> list[str] | None:
    """`python runner/swift_entry.py` on the python that runs `swift_bin`; for several processes (one a GPU) under
    `python -m torch.distributed.run`, as `swift sft` would start them but without the wrapper, on a free port
    (`--standalone`, so two such jobs on one machine do not meet on swift's default 29500). None when that python
    cannot be told from the swift executable (then `swift` runs as it is)."""
    try:
        interpreter = interpreter_of(resolve_swift(swift_bin))
    except SwiftNotFound:
        return None
    if not interpreter or not any(Path(part).name.startswith("python") for part in interpreter):
        return None  # not a python console script (e.g. a shell shim): its own way of starting swift stands
    if processes > 1:
        return [
            *interpreter,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(processes),
            swift_entry.__file__,
        ]
    return [*interpreter, swift_entry.__file__]


def build_export(
    *, checkpoint: str, export_dir: Path, config: Config, entry: Sequence[str] | None = None
) -> SwiftCommand:
    """Merge the LoRA adapters into a full model; `--exist_ok` lets a second export reuse the folder."""
    argv = (
        *(entry or [config.swift_bin]),
        "export",
        "--adapters",
        checkpoint,
        "--merge_lora",
        "true",
        "--output_dir",
        str(export_dir),
        "--exist_ok",
        "true",
    )
    return SwiftCommand(argv, swift_env(config))


def _is_local_path(model: object) -> bool:
    return isinstance(model, str) and (model.startswith(("/", "./", "../", "~")))
