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

Every key, its type, default and bound is in runner/config_schema.py, once; `Config` below holds the tables and is
what the code reads. A key a table does not know, a value of the wrong type or a choice not on the list is refused
at start (ConfigError: the file, the key and what is wrong, as facts, worded in bot/words/config.py); `trainbot config
check` prints the effective configuration.
Relative paths are taken from base_dir (the current directory unless the caller says otherwise); absolute ones are
used as they are.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast, get_args

from pydantic import BaseModel, Field, PrivateAttr, ValidationError
from pydantic_core import ErrorDetails

from runner.config_schema import (
    BASE_DIR,
    TABLE,
    AccessConfig,
    BackendTable,
    GpusTable,
    HttpConfig,
    PathsTable,
    RecipeTable,
    RunnerTable,
    SlackConfig,
    SlurmConfig,
    SwiftTable,
    base_of,
)

__all__ = [
    "AccessConfig",
    "Config",
    "ConfigError",
    "ConfigMistake",
    "HttpConfig",
    "SlackConfig",
    "SlurmConfig",
    "load_config",
]


MistakeCode = Literal[
    "unreadable", "unknown_table", "unknown_key", "wrong_type", "not_one_of", "out_of_range", "invalid", "other"
]
ValueType = Literal["string", "int", "float", "bool", "tuple", "list", "path", "dict", "model"]  # pydantic's names
Bound = Literal["gt", "ge", "lt", "le"]
_VALUE_TYPES = frozenset(get_args(ValueType))
_BOUNDS: tuple[Bound, ...] = get_args(Bound)


@dataclass(frozen=True)
class ConfigMistake:
    """One mistake of the config, worded by bot/words/config.py. `file` None: no file (defaults and overrides).
    Where: `tables` and `key` (`[access] users[0]`: ("access",) and "users[0]"; an unknown table: () and its name).
    `value` as written, None where it is not kept: a table, or an env value (it may be a secret, never echoed).
    By `code`: unknown_table, unknown_key: `known` (the names taken there) and `close` (the closest, if any);
    wrong_type: `expected`; not_one_of: `choices`; out_of_range: `bound` (("ge", 1.0): at least 1); invalid: `detail`,
    the validator's; unreadable: `detail`, the OS's or TOML's error; the others: `detail`, pydantic's message."""

    file: Path | None
    code: MistakeCode
    tables: tuple[str, ...] = ()
    key: str = ""
    value: object = None
    expected: ValueType | None = None
    choices: tuple[str, ...] = ()
    bound: tuple[Bound, float] | None = None
    known: tuple[str, ...] = ()
    close: str | None = None
    detail: str = ""


class ConfigError(ValueError):
    """The config is refused: `mistakes`, each a fact, or `text`, a refusal that bot/ worded itself (the API tokens,
    bot/http/auth.py). bot/words/config.py's config_error_text says it to people; the message is for logs."""

    def __init__(self, mistakes: Sequence[ConfigMistake] = (), *, text: str | None = None) -> None:
        self.mistakes, self.text = tuple(mistakes), text
        facts = (f"{m.file or 'config'}: {'.'.join((*m.tables, m.key))}: {m.code}" for m in self.mistakes)
        super().__init__(text if text is not None else "; ".join(facts))


def _absent() -> Any:
    """A table the file leaves out: read as an empty one (so its paths are resolved like written ones)."""
    return Field(default_factory=dict)


class Config(BaseModel):
    """The effective settings: the file's tables (unknown tables are refused like unknown keys), paths resolved
    against base_dir. Built by load_config (below), which turns every mistake into a ConfigError."""

    model_config = TABLE
    paths: PathsTable = _absent()
    swift: SwiftTable = _absent()
    llm: RecipeTable = _absent()
    vlm: RecipeTable = _absent()
    gpus: GpusTable = _absent()
    runner: RunnerTable = _absent()
    backend: BackendTable = _absent()
    slurm: SlurmConfig = _absent()
    access: AccessConfig = _absent()
    slack: SlackConfig = _absent()
    http: HttpConfig = _absent()
    _base_dir: Path = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        self._base_dir = base_of(context)

    @property
    def base_dir(self) -> Path:
        """Where relative paths were taken from (load_config's base_dir)."""
        return self._base_dir

    @property
    def db_path(self) -> Path:
        return self.paths.data_dir / "trainbot.db"

    def changed(self, **tables: dict[str, Any]) -> Config:
        """This config with some keys changed, e.g. `changed(runner={"warm_start": False})`; unchecked, for benches
        and tests that change a config they were given."""
        return self.model_copy(update={t: getattr(self, t).model_copy(update=keys) for t, keys in tables.items()})

    # The names the code has always read: each is one key of the tables above (its type, default and bound there).
    @property
    def data_dir(self) -> Path:
        return self.paths.data_dir

    @property
    def output_root(self) -> Path:
        return self.paths.output_root

    @property
    def log_dir(self) -> Path:
        return self.paths.log_dir

    @property
    def model_roots(self) -> tuple[Path, ...]:
        return self.paths.model_roots

    @property
    def data_roots(self) -> tuple[Path, ...]:
        return self.paths.data_roots

    @property
    def swift_bin(self) -> str:
        return self.swift.bin

    @property
    def swift_version(self) -> str | None:
        return self.swift.version

    @property
    def offline(self) -> bool:
        return self.swift.offline

    @property
    def swift_env(self) -> dict[str, str]:
        return self.swift.env

    @property
    def gpu_inventory(self) -> tuple[str, ...]:
        return self.gpus.inventory

    @property
    def gpu_poll_seconds(self) -> float:
        return self.gpus.poll_seconds

    @property
    def progress_poll_seconds(self) -> float:
        return self.runner.progress_poll_seconds

    @property
    def safety_poll_seconds(self) -> float:
        return self.runner.safety_poll_seconds

    @property
    def stop_grace_s(self) -> float:
        return self.runner.stop_grace_seconds

    @property
    def term_grace_s(self) -> float:
        return self.runner.term_grace_seconds

    @property
    def scrub_env(self) -> tuple[str, ...]:
        return self.runner.scrub_env

    @property
    def warm_start(self) -> bool:
        return self.runner.warm_start

    @property
    def try_idle_s(self) -> float:
        return self.runner.try_idle_minutes * 60


def load_config(
    path: Path | None = None, *, base_dir: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Config:
    """Read `path` (if given) over the defaults, then `overrides` (`{"runner.warm_start": False}`); relative paths
    are taken from base_dir (default: cwd). Any mistake is a ConfigError: one ConfigMistake for each."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError([ConfigMistake(path, "unreadable", detail=str(exc))]) from exc
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.rpartition(".")
        raw.setdefault(section, {})[key] = value
    try:
        return Config.model_validate(raw, context={BASE_DIR: base_dir or Path.cwd()})
    except ValidationError as exc:
        raise ConfigError([_mistake(path, error) for error in exc.errors()]) from None


def _mistake(path: Path | None, error: ErrorDetails) -> ConfigMistake:
    """One of pydantic's errors as a fact: where (tables and key), the value as written, what is wrong."""
    tables, key = _split_loc(error["loc"])
    hidden = isinstance(error["input"], dict) or "env" in error["loc"]  # an env value may be a secret: never kept
    at = ConfigMistake(path, "other", tables, key, None if hidden else error["input"], detail=error["msg"])
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        known, close = _known(tables, str(error["loc"][-1]))
        return replace(at, code="unknown_key" if tables else "unknown_table", known=known, close=close)
    if kind == "literal_error":
        return replace(at, code="not_one_of", choices=tuple(re.findall(r"'([^']*)'", str(ctx.get("expected", "")))))
    if kind == "value_error":
        return replace(at, code="invalid", detail=str(ctx.get("error", "")))
    if kind.endswith("_type") and (name := kind.removesuffix("_type")) in _VALUE_TYPES:
        return replace(at, code="wrong_type", expected=cast(ValueType, name))
    if bound := next((b for b in _BOUNDS if b in ctx), None):
        return replace(at, code="out_of_range", bound=(bound, float(ctx[bound])))
    return at


def _split_loc(loc: Sequence[str | int]) -> tuple[tuple[str, ...], str]:
    """('llm', 'flags', 'lr') -> (('llm',), 'lr'); ('access', 'users', 0) -> (('access',), 'users[0]')."""
    parts = [p for i, p in enumerate(loc) if not (i == 1 and p == "flags" and loc[0] in ("llm", "vlm"))]
    tables: list[str] = []
    model: type[BaseModel] = Config
    while len(parts) > 1 and isinstance(parts[0], str) and (sub := _table_model(model, parts[0])) is not None:
        tables.append(str(parts.pop(0)))
        model = sub
    key = str(parts[0]) + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts[1:])
    return tuple(tables), key


def _table_model(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    field = model.model_fields.get(name)
    sub = field.annotation if field else None
    return sub if isinstance(sub, type) and issubclass(sub, BaseModel) else None


def _known(tables: Sequence[str], key: str) -> tuple[tuple[str, ...], str | None]:
    """The names the table (the file itself: its tables) takes, and the one closest to `key`."""
    model: type[BaseModel] | None = Config
    for name in tables:
        model = model and _table_model(model, name)
    known = tuple(sorted(model.model_fields)) if model else ()
    return known, next(iter(difflib.get_close_matches(key, known, n=1)), None)
