"""`trainbot config check`: the effective configuration as TOML, every default filled in, secrets masked."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from runner.config import Config, load_config, read_config_file
from runner.config_schema import toml_value

MASK = "********"
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|API_?KEY|PRIVATE|AUTH", re.IGNORECASE)


def effective_config_text(path: Path | None) -> str:
    """Raises ConfigError for a broken file, like `trainbot serve` would at start."""
    file, config = read_config_file(path), load_config(path)
    tables = file.model_dump()
    tables["paths"] = {key: _resolved(config, key) for key in tables["paths"]}
    tables["http"]["tokens_file"] = config.http.tokens_file
    for recipe in ("llm", "vlm"):
        table = tables[recipe]
        table.update({"args": {**table.pop("flags"), **table["args"]}})
    secret_names = set(config.scrub_env)
    header = f"# trainbot: effective configuration of {path or 'the built-in defaults'}"
    lines = [header, "# (every key with its value, defaults included; secret values masked; relative paths from "
             f"{config.base_dir})",
             f"# the job database: {config.db_path} (back it up while the bot runs: trainbot backup FILE)"]
    for name, table in tables.items():
        lines += _table(name, table, secret_names)
    return "\n".join(lines) + "\n"


def _resolved(config: Config, key: str) -> str | list[str]:
    resolved = getattr(config, key)
    return [str(p) for p in resolved] if isinstance(resolved, tuple) else str(resolved)


def _table(name: str, table: Mapping[str, Any], secret_names: set[str]) -> Iterator[str]:
    yield ""
    yield f"[{name}]"
    subtables = {k: v for k, v in table.items() if isinstance(v, dict)}
    for key, value in table.items():
        if key in subtables:
            continue
        yield f"# {key} = (not set)" if value is None else f"{key} = {toml_value(value)}"
    for key, sub in subtables.items():
        yield f"[{name}.{key}]"
        masked = key == "env"
        for sub_key, value in sub.items():
            secret = masked and (sub_key in secret_names or _SECRET_NAME.search(sub_key) is not None)
            yield f"{_key(sub_key)} = {toml_value(MASK if secret else value)}"


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_value(key)
