"""`trainbot config check`: the effective configuration as TOML, every default filled in, secrets masked."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from runner.config import HttpConfig, load_config
from runner.config_schema import toml_value

MASK = "********"
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|API_?KEY|PRIVATE|AUTH", re.IGNORECASE)


def effective_config_text(path: Path | None) -> str:
    """Raises ConfigError for a broken file, like `trainbot serve` would at start."""
    config = load_config(path)
    tables = config.model_dump()  # paths as resolved: absolute
    for recipe in ("llm", "vlm"):
        table = tables[recipe]
        table.update({"args": {**table.pop("flags"), **table["args"]}})
    secret_names = set(config.scrub_env)
    header = f"# trainbot: effective configuration of {path or 'the built-in defaults'}"
    lines = [
        header,
        f"# (every key with its value, defaults included; secret values masked; relative paths from {config.base_dir})",
        f"# the job database: {config.db_path} (back it up while the bot runs: trainbot backup FILE)",
    ]
    for name, table in tables.items():
        lines += _table(name, table, secret_names)
        if name == "http":
            lines += _http_meaning(config.http)
    return "\n".join(lines) + "\n"


def _http_meaning(http: HttpConfig) -> list[str]:
    """What [http]'s access keys mean together, as TOML comments: who acts without a token, whom it believes."""
    if not http.allow_anonymous_loopback:
        anonymous = ["requests without a token get 401, from loopback too"]
    elif http.anonymous_loopback_with_tokens:
        anonymous = [
            "loopback requests without a token act as `http:anonymous`, even with API tokens configured:",
            "every user of this host, and every request through a reverse proxy on it, may do what",
            "http:anonymous may (leave anonymous_loopback_with_tokens false behind a proxy)",
        ]
    else:
        anonymous = [
            "loopback requests without a token act as `http:anonymous` only while no API tokens are",
            "configured; with tokens (TRAINBOT_API_TOKENS or tokens_file) they get 401, since behind a",
            "reverse proxy on this host every request is loopback (anonymous_loopback_with_tokens = true",
            "lets them in anyway)",
        ]
    if http.trusted_proxies:
        proxies = [
            f"X-Forwarded-For and X-Forwarded-Proto are believed from {', '.join(http.trusted_proxies)} only:",
            "through such a proxy the client is the one it names (loopback only if that is), and",
            "`X-Forwarded-Proto: https` makes the web session cookie Secure",
        ]
    else:
        proxies = [
            "no proxy is trusted: X-Forwarded-For and X-Forwarded-Proto are ignored, and the web session",
            "cookie is Secure only on a page served over HTTPS directly",
        ]
    return ["# what this means:", *(f"#   {line}" for line in anonymous), *(f"#   {line}" for line in proxies)]


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
