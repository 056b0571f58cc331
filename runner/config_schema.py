"""The config's tables: one pydantic model per TOML table, each key's type, default and bound stated here once.

`runner.config.Config` (the whole file) holds them and is what the code reads: load_config validates the file
into it, with relative paths taken from base_dir as they are read. Every table refuses keys it does not know
(`extra="forbid"`) and values of the wrong type (strict: "3" is not 3), except the recipe tables (`[llm]`,
`[vlm]`), whose other keys are swift flags.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

from runner.paths import resolved
from runner.recipes import ArgValue

# defaults are validated too, so a default path is resolved against base_dir like a written one
TABLE = ConfigDict(extra="forbid", strict=True, frozen=True, validate_default=True)
BASE_DIR = "base_dir"  # the validation context's key: where relative paths are taken from (load_config's base_dir)

BackendKind = Literal["local", "slurm"]
Seconds = Annotated[float, Field(gt=0)]
PerMinute = Annotated[float, Field(gt=0)]
Port = Annotated[int, Field(ge=1, le=65535)]
Names = Annotated[tuple[str, ...], Field(strict=False)]  # a TOML list of strings; a bare string is refused


def _gpu_inventory(value: Any) -> tuple[str, ...]:
    """A count (`2` = GPUs 0 and 1) or the GPU ids; never a string, which would be read letter by letter."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return tuple(str(i) for i in range(value))
    if isinstance(value, list | tuple) and all(isinstance(g, str | int) and not isinstance(g, bool) for g in value):
        return tuple(str(g) for g in value)
    example = [g.strip() for g in value.split(",")] if isinstance(value, str) else ["0", "3"]
    raise ValueError(f"must be a GPU count (e.g. 2) or a list of GPU ids (e.g. {toml_value(example)})")


def _flag_value(value: Any) -> ArgValue:
    """A swift flag's value as the command line gets it (true/false, numbers as written, lists as several words)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(
        'must be a string, a number, true/false or a list of strings (e.g. 5e-5 or ["a.jsonl", "b.jsonl"])'
    )


def _proxy_addresses(value: Any) -> tuple[str, ...]:
    """IP addresses or networks (`10.0.0.0/8`), as written; a host name or a typo is refused, not ignored."""
    if not isinstance(value, list | tuple) or not all(isinstance(a, str) for a in value):
        raise ValueError('must be a list of IP addresses or networks (e.g. ["127.0.0.1", "10.0.0.0/8"])')
    for address in value:
        try:
            ipaddress.ip_network(address.strip()) if "/" in address else ipaddress.ip_address(address.strip())
        except ValueError as exc:
            why = f" ({exc})" if "/" in address else ""  # e.g. a network's host bits set
            raise ValueError(
                f"{toml_value(address)} is not an IP address or network{why}: give addresses such as "
                '"127.0.0.1" or networks such as "10.0.0.0/8", not host names'
            ) from None
    return tuple(a.strip() for a in value)


def base_of(context: Any) -> Path:
    """The folder relative paths are taken from: the validation context's, else the current directory."""
    base = context.get(BASE_DIR) if isinstance(context, dict) else None
    return (base if isinstance(base, Path) else Path.cwd()).absolute()


def _under_base(value: Path, info: ValidationInfo) -> Path:
    return (base_of(info.context) / value).absolute()  # an absolute value replaces base: it never depends on the cwd


def _log_dir_in_place(log_dir: Path) -> Path:
    """The log folder as it resolves on disk, which must be where the config says: a symbolic link at the folder
    (or below it) leading out of the folder it is written in is refused. Jobs' logs are written there, and every
    launch checks that a log file still lies inside it."""
    written = Path(os.path.normpath(log_dir))
    real, parent = resolved(written, log_dir), resolved(written.parent, log_dir)
    if not real.is_relative_to(parent):
        raise ValueError(
            f"leads to {real} (a symbolic link), outside {written.parent}, where the config puts it; name the "
            f"folder itself, e.g. log_dir = {toml_value(str(real))}, or remove the link"
        )
    return real


GpuInventory = Annotated[tuple[str, ...], BeforeValidator(_gpu_inventory)]
FlagValue = Annotated[ArgValue, BeforeValidator(_flag_value)]
ProxyAddresses = Annotated[tuple[str, ...], BeforeValidator(_proxy_addresses)]
BasePath = Annotated[Path, Field(strict=False), AfterValidator(_under_base)]  # a string in the file
BasePaths = Annotated[tuple[BasePath, ...], Field(strict=False)]
RECIPE_KEYS = ("args", "env", "drop")


class PathsTable(BaseModel):
    model_config = TABLE
    data_dir: BasePath = Path(".trainbot")  # the SQLite file lives here
    output_root: BasePath = Path("output")  # every job's `out=` must lie inside this folder
    log_dir: Annotated[BasePath, AfterValidator(_log_dir_in_place)] = Path("logs")
    model_roots: BasePaths = ()
    data_roots: BasePaths = ()


class SwiftTable(BaseModel):
    model_config = TABLE
    bin: str = "swift"
    version: str | None = None
    offline: bool = False
    env: dict[str, str] = Field(default_factory=dict)


class RecipeTable(BaseModel):
    """`key = value` (or `[llm.args] key = value`) replaces or appends a swift flag; `drop` removes flags."""

    model_config = TABLE
    flags: dict[str, FlagValue] = Field(default_factory=dict)
    args: dict[str, FlagValue] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    drop: Names = ()

    @model_validator(mode="before")
    @classmethod
    def _plain_keys_are_flags(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        flags = {k: v for k, v in data.items() if k not in RECIPE_KEYS}
        return {"flags": flags, **{k: v for k, v in data.items() if k in RECIPE_KEYS}}

    @property
    def changes(self) -> dict[str, ArgValue | None]:
        """What the table does to the recipe: each flag's new value (plain keys, then `args`), None for a dropped
        one."""
        return {**self.flags, **self.args, **dict.fromkeys(self.drop)}


class GpusTable(BaseModel):
    model_config = TABLE
    inventory: GpuInventory = ()
    poll_seconds: Seconds = 5.0


class RunnerTable(BaseModel):
    model_config = TABLE
    progress_poll_seconds: Seconds = 2.0
    safety_poll_seconds: Seconds = 30.0  # idle loops look for work another process left behind this often
    stop_grace_seconds: Seconds = 30.0
    term_grace_seconds: Seconds = 10.0
    scrub_env: Names = ()  # env var names never passed to a job, besides the bot's own secrets
    warm_start: bool = True  # keep a process with swift imported for the next job (runner/warm.py)
    try_idle_minutes: Annotated[float, Field(gt=0, le=24 * 60)] = 5.0  # a try's model stays loaded this long idle


class BackendTable(BaseModel):
    model_config = TABLE
    kind: BackendKind = "local"


class SlurmConfig(BaseModel):
    model_config = TABLE
    partition: str | None = None
    account: str | None = None
    time_limit: str | None = None
    nodes: Annotated[int, Field(ge=1)] = 1
    extra_args: Names = ()
    poll_seconds: Seconds = 2.0


class AccessConfig(BaseModel):
    """Empty lists mean everyone in the workspace."""

    model_config = TABLE
    users: Names = ()
    groups: Names = ()
    channels: Names = ()
    admins: Names = ()
    # who may try (ask) a job's model besides its owner and the admins: users, groups, or anyone in a channel
    try_users: Names = ()
    try_groups: Names = ()
    try_channels: Names = ()


class SlackConfig(BaseModel):
    model_config = TABLE
    api_url: str | None = None
    card_interval_s: Seconds = 3.0
    commands_at_once: Annotated[int, Field(ge=1, le=64)] = 4  # commands worked on at once after their acks
    http_port: Port = 3000
    post_per_channel_per_min: PerMinute = 60.0
    update_per_min: PerMinute = 50.0
    keep_notices_hours: Annotated[float, Field(gt=0)] = 168.0  # notices wait this long for a Slack bot that is down


class HttpConfig(BaseModel):
    """The HTTP API (`trainbot serve`)."""

    model_config = TABLE
    host: str = "127.0.0.1"
    port: Port = 8000
    tokens_file: BasePath | None = None
    allow_anonymous_loopback: bool = True  # the seed's scripts send no token (without API tokens configured)
    # with API tokens configured, loopback requests without one stay anonymous only if this says so: behind a
    # reverse proxy on the same host every request is loopback
    anonymous_loopback_with_tokens: bool = False
    trusted_proxies: ProxyAddresses = ()  # believed for X-Forwarded-For / X-Forwarded-Proto; no one else is
    notify_channel: str | None = None  # where jobs created over HTTP get their card
    max_body_bytes: Annotated[int, Field(ge=1)] = 65536

    def anonymous_loopback(self, has_tokens: bool) -> bool:
        """Whether a loopback request without a token acts as `http:anonymous`."""
        return self.allow_anonymous_loopback and (not has_tokens or self.anonymous_loopback_with_tokens)


def toml_value(value: object) -> str:
    """A value written as TOML (strings quoted, lists and tables inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))
