"""Settings: one TOML file (optional) over built-in defaults; secrets come only from the environment.

Example `trainbot.toml`:

    [paths]
    data_dir = ".trainbot"          # the SQLite file lives here
    output_root = "output"          # every job's `out=` must lie inside this folder
    log_dir = "logs"                # logs/<kind>_training_<id>.log (the seed's naming)

    [swift]
    bin = "swift"                   # or /opt/swift-venv/bin/swift
    offline = true                  # HF_HUB_OFFLINE=1 and --check_model false (air-gapped machines)

    [llm]                           # changes to the fixed recipe, e.g. local mirrors
    model = "/models/Qwen2.5-7B-Instruct"
    dataset = ["/data/alpaca_zh.jsonl#500", "/data/alpaca_en.jsonl#500", "/data/self-cognition#500"]
    [llm.args]                      # any other swift flag: replaced in place or appended
    model_type = "qwen2"

    [gpus]
    inventory = 2                   # GPUs to assume where there is no NVIDIA driver

    [backend]
    kind = "local"                  # or "slurm" (see [slurm])

    [access]                        # empty lists = everyone in the workspace
    users = []
    admins = []
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.recipes import ArgValue


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class RecipeConfig:
    """Config changes to one recipe: values replacing the recipe's (None removes a flag) and extra env."""

    args: dict[str, ArgValue | None] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SlurmConfig:
    partition: str | None = None
    account: str | None = None
    time_limit: str | None = None
    nodes: int = 1
    extra_args: tuple[str, ...] = ()
    poll_seconds: float = 2.0


@dataclass(frozen=True)
class AccessConfig:
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    admins: tuple[str, ...] = ()


@dataclass(frozen=True)
class SlackConfig:
    api_url: str | None = None
    card_interval_s: float = 3.0
    http_port: int = 3000
    post_per_channel_per_min: int = 60  # Slack: chat.postMessage about 1 a second per channel, short bursts
    update_per_min: int = 50  # Slack: chat.update is tier 3, about 50 a minute per app per workspace


@dataclass(frozen=True)
class Config:
    base_dir: Path
    data_dir: Path
    output_root: Path
    log_dir: Path
    swift_bin: str = "swift"
    swift_version: str | None = None
    offline: bool = False
    swift_env: dict[str, str] = field(default_factory=dict)
    llm: RecipeConfig = field(default_factory=RecipeConfig)
    vlm: RecipeConfig = field(default_factory=RecipeConfig)
    gpu_inventory: tuple[str, ...] = ()
    gpu_poll_seconds: float = 5.0
    progress_poll_seconds: float = 2.0
    safety_poll_seconds: float = 30.0  # idle loops look for work another process left behind this often
    stop_grace_s: float = 30.0
    term_grace_s: float = 10.0
    backend: str = "local"
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    access: AccessConfig = field(default_factory=AccessConfig)
    slack: SlackConfig = field(default_factory=SlackConfig)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "trainbot.db"


def load_config(path: Path | None = None, *, base_dir: Path | None = None,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Read `path` (if given) over the defaults; relative paths are taken from base_dir (default: cwd)."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.rpartition(".")
        raw.setdefault(section, {})[key] = value
    base = (base_dir or Path.cwd()).absolute()
    paths = _table(raw, "paths")

    def under_base(key: str, default: str) -> Path:
        return (base / str(paths.get(key, default))).absolute()

    swift = _table(raw, "swift")
    gpus = _table(raw, "gpus")
    runner = _table(raw, "runner")
    inventory = gpus.get("inventory", ())
    if isinstance(inventory, int):
        inventory = [str(i) for i in range(inventory)]
    return Config(
        base_dir=base,
        data_dir=under_base("data_dir", ".trainbot"),
        output_root=under_base("output_root", "output"),
        log_dir=under_base("log_dir", "logs"),
        swift_bin=str(swift.get("bin", "swift")),
        swift_version=swift.get("version"),
        offline=bool(swift.get("offline", False)),
        swift_env={str(k): str(v) for k, v in _table(swift, "env").items()},
        llm=_recipe_config(_table(raw, "llm")),
        vlm=_recipe_config(_table(raw, "vlm")),
        gpu_inventory=tuple(str(g) for g in inventory),
        gpu_poll_seconds=float(gpus.get("poll_seconds", 5.0)),
        progress_poll_seconds=float(runner.get("progress_poll_seconds", 2.0)),
        safety_poll_seconds=float(runner.get("safety_poll_seconds", 30.0)),
        stop_grace_s=float(runner.get("stop_grace_seconds", 30.0)),
        term_grace_s=float(runner.get("term_grace_seconds", 10.0)),
        backend=str(_table(raw, "backend").get("kind", "local")),
        slurm=_slurm_config(_table(raw, "slurm")),
        access=AccessConfig(**{k: tuple(str(x) for x in v) for k, v in _table(raw, "access").items()}),
        slack=SlackConfig(**_table(raw, "slack")),
    )


def _table(raw: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


def _recipe_config(table: Mapping[str, Any]) -> RecipeConfig:
    """`key = value` replaces (or appends) a flag; `drop = ["flag", ...]` removes flags from the recipe."""
    args: dict[str, ArgValue | None] = {}
    plain = {k: v for k, v in table.items() if k not in ("args", "env", "drop")}
    for key, value in {**plain, **_table(table, "args")}.items():
        args[key] = _arg_value(value)
    for key in table.get("drop", ()):
        args[str(key)] = None
    return RecipeConfig(args=args, env={str(k): str(v) for k, v in _table(table, "env").items()})


def _arg_value(value: Any) -> ArgValue:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return str(value)


def _slurm_config(table: Mapping[str, Any]) -> SlurmConfig:
    extra = table.get("extra_args", ())
    return SlurmConfig(
        partition=table.get("partition"), account=table.get("account"), time_limit=table.get("time_limit"),
        nodes=int(table.get("nodes", 1)), extra_args=tuple(str(x) for x in extra),
        poll_seconds=float(table.get("poll_seconds", 2.0)),
    )
