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

    [http]                          # the HTTP API beside the Slack bot (`trainbot serve`)
    host = "127.0.0.1"
    port = 8000
    tokens_file = "api-tokens"      # lines `TOKEN USER_ID`; or TRAINBOT_API_TOKENS="tok1=U123,tok2=U456"
    allow_anonymous_loopback = true # without API tokens, requests from 127.0.0.1 act as `http:anonymous`
    anonymous_loopback_with_tokens = false  # ... with tokens too (never behind a reverse proxy on this host)
    trusted_proxies = ["127.0.0.1"] # believed for X-Forwarded-For/-Proto (a reverse proxy on this host)
    notify_channel = "C0123"        # jobs created over HTTP get a card there

Every table and default is in runner/config_schema.py. A key a table does not know, a value of the wrong type or a
choice not on the list is refused at start (ConfigError naming the file and the key); `trainbot config check`
prints the effective configuration. Relative paths are taken from base_dir (the current directory unless the
caller says otherwise); absolute ones are used as they are.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from runner.config_schema import (
    AccessConfig,
    BackendKind,
    ConfigFile,
    HttpConfig,
    RecipeTable,
    SlackConfig,
    SlurmConfig,
    toml_value,
)
from runner.paths import resolved
from runner.recipes import ArgValue

__all__ = [
    "AccessConfig",
    "Config",
    "ConfigError",
    "HttpConfig",
    "RecipeConfig",
    "SlackConfig",
    "SlurmConfig",
    "load_config",
    "read_config_file",
]


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class RecipeConfig:
    """Config changes to one recipe: values replacing the recipe's (None removes a flag) and extra env."""

    args: dict[str, ArgValue | None]
    env: dict[str, str]


@dataclass(frozen=True)
class Config:
    """The effective settings; built only by load_config (the defaults live in runner/config_schema.py)."""

    base_dir: Path
    data_dir: Path
    output_root: Path
    log_dir: Path
    model_roots: tuple[Path, ...]
    data_roots: tuple[Path, ...]
    swift_bin: str
    swift_version: str | None
    offline: bool
    swift_env: dict[str, str]
    llm: RecipeConfig
    vlm: RecipeConfig
    gpu_inventory: tuple[str, ...]
    gpu_poll_seconds: float
    progress_poll_seconds: float
    safety_poll_seconds: float
    stop_grace_s: float
    term_grace_s: float
    scrub_env: tuple[str, ...]
    warm_start: bool
    try_idle_s: float
    backend: BackendKind
    slurm: SlurmConfig
    access: AccessConfig
    slack: SlackConfig
    http: HttpConfig

    @property
    def db_path(self) -> Path:
        return self.data_dir / "trainbot.db"


def load_config(
    path: Path | None = None, *, base_dir: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Config:
    """Read `path` (if given) over the defaults; relative paths are taken from base_dir (default: cwd)."""
    file = read_config_file(path, overrides=overrides)
    base = (base_dir or Path.cwd()).absolute()

    def under_base(value: str | Path) -> Path:
        return (base / value).absolute()  # an absolute value replaces base: it never depends on the cwd

    tokens_file = file.http.tokens_file
    return Config(
        base_dir=base,
        data_dir=under_base(file.paths.data_dir),
        output_root=under_base(file.paths.output_root),
        log_dir=_log_dir(under_base(file.paths.log_dir), file.paths.log_dir, path),
        model_roots=tuple(under_base(p) for p in file.paths.model_roots),
        data_roots=tuple(under_base(p) for p in file.paths.data_roots),
        swift_bin=file.swift.bin,
        swift_version=file.swift.version,
        offline=file.swift.offline,
        swift_env=dict(file.swift.env),
        llm=_recipe_config(file.llm),
        vlm=_recipe_config(file.vlm),
        gpu_inventory=file.gpus.inventory,
        gpu_poll_seconds=file.gpus.poll_seconds,
        progress_poll_seconds=file.runner.progress_poll_seconds,
        safety_poll_seconds=file.runner.safety_poll_seconds,
        stop_grace_s=file.runner.stop_grace_seconds,
        term_grace_s=file.runner.term_grace_seconds,
        scrub_env=file.runner.scrub_env,
        warm_start=file.runner.warm_start,
        try_idle_s=file.runner.try_idle_minutes * 60,
        backend=file.backend.kind,
        slurm=file.slurm,
        access=file.access,
        slack=file.slack,
        http=file.http.model_copy(update={"tokens_file": tokens_file and under_base(tokens_file)}),
    )


def _log_dir(log_dir: Path, value: str, path: Path | None) -> Path:
    """The log folder as it resolves on disk, which must be where the config says: a symbolic link at the folder
    (or below it) leading out of the folder it is written in is refused, naming the key. Jobs' logs are written
    there, and every launch checks that a log file still lies inside it."""
    written = Path(os.path.normpath(log_dir))
    real, parent = resolved(written, log_dir), resolved(written.parent, log_dir)
    if not real.is_relative_to(parent):
        raise ConfigError(
            f"{path or 'config'}: [paths] log_dir = {toml_value(value)}: leads to {real} (a symbolic "
            f"link), outside {written.parent}, where the config puts it; name the folder itself, e.g. "
            f"log_dir = {toml_value(str(real))}, or remove the link"
        )
    return real


def read_config_file(path: Path | None = None, *, overrides: Mapping[str, Any] | None = None) -> ConfigFile:
    """The file's tables, validated, defaults filled in; any mistake is a ConfigError naming the file and key."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the config file: {exc}") from exc
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.rpartition(".")
        raw.setdefault(section, {})[key] = value
    try:
        return ConfigFile.model_validate(raw)
    except ValidationError as exc:
        lines = [_mistake(error) for error in exc.errors()]
        raise ConfigError(f"{path or 'config'}: " + f"\n{path or 'config'}: ".join(lines)) from None


def _recipe_config(table: RecipeTable) -> RecipeConfig:
    args: dict[str, ArgValue | None] = {**table.flags, **table.args}
    args.update({flag: None for flag in table.drop})
    return RecipeConfig(args=args, env=dict(table.env))


_EXPECTED = {
    "string": 'a string, e.g. "text"',
    "int": "a whole number, e.g. 2",
    "float": "a number, e.g. 2.5",
    "bool": "true or false",
    "tuple": 'a list, e.g. ["a", "b"]',
    "list": 'a list, e.g. ["a", "b"]',
    "path": 'a path, e.g. "output"',
    "dict": 'a table, e.g. { KEY = "value" }',
    "model": "a table",
}


def _mistake(error: ErrorDetails) -> str:
    """One line: where (`[table] key = value`) and what would be right."""
    tables, key = _split_loc(error["loc"])
    where = f"[{'.'.join(tables)}] {key}" if tables else key
    hidden = isinstance(error["input"], dict) or "env" in error["loc"]  # an env value may be a secret: never echoed
    shown = "" if hidden else f" = {toml_value(error['input'])}"
    if error["type"] == "extra_forbidden":
        return f"{where + shown if tables else f'[{key}]'}: {_unknown(tables, str(error['loc'][-1]))}"
    kind = error["type"]
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str((error.get("ctx") or {}).get("expected", "")))
        what = "must be one of " + ", ".join(f'"{c}"' for c in choices)
    elif kind == "value_error":
        what = str(error["msg"]).removeprefix("Value error, ")
    elif kind.endswith("_type") and kind.removesuffix("_type") in _EXPECTED:
        what = "must be " + _EXPECTED[kind.removesuffix("_type")]
    else:
        what = str(error["msg"]).replace("Input should be", "must be")
    return f"{where}{shown}: {what}"


def _split_loc(loc: Sequence[str | int]) -> tuple[list[str], str]:
    """('llm', 'flags', 'lr') -> (['llm'], 'lr'); ('access', 'users', 0) -> (['access'], 'users[0]')."""
    parts = [p for i, p in enumerate(loc) if not (i == 1 and p == "flags" and loc[0] in ("llm", "vlm"))]
    tables: list[str] = []
    model: type[BaseModel] = ConfigFile
    while len(parts) > 1 and isinstance(parts[0], str) and (sub := _table_model(model, parts[0])) is not None:
        tables.append(str(parts.pop(0)))
        model = sub
    key = str(parts[0]) + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts[1:])
    return tables, key


def _table_model(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    field = model.model_fields.get(name)
    sub = field.annotation if field else None
    return sub if isinstance(sub, type) and issubclass(sub, BaseModel) else None


def _unknown(tables: list[str], key: str) -> str:
    model: type[BaseModel] | None = ConfigFile
    for name in tables:
        model = model and _table_model(model, name)
    known = sorted(model.model_fields) if model else []
    close = difflib.get_close_matches(key, known, n=1)
    if not tables:
        hint = f"did you mean [{close[0]}]? " if close else ""
        return f"unknown table; {hint}known tables: " + ", ".join(f"[{k}]" for k in known)
    hint = f'did you mean "{close[0]}"? ' if close else ""
    return f"unknown key; {hint}[{'.'.join(tables)}] takes: " + ", ".join(known)
