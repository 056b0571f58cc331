"""The words for a refused config (runner/config.py's ConfigError): one line a mistake, `FILE: where: what would be
right`, for whoever starts the bot or runs `trainbot config check`."""

from __future__ import annotations

from typing import assert_never

from runner.config import Bound, ConfigError, ConfigMistake, ValueType
from runner.config_schema import toml_value

EXPECTED: dict[ValueType, str] = {
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
BOUNDS: dict[Bound, str] = {
    "gt": "greater than",
    "ge": "greater than or equal to",
    "lt": "less than",
    "le": "less than or equal to",
}


def config_error_text(exc: ConfigError) -> str:
    """Every mistake, one line each; or the words bot/ gave the error itself."""
    if exc.text is not None:
        return exc.text
    return "\n".join(mistake_text(m) for m in exc.mistakes)


def mistake_text(m: ConfigMistake) -> str:
    """`FILE: [table] key = value: what would be right` (the value left out where it is not kept)."""
    if m.code == "unreadable":
        return f"{m.file}: cannot read the config file: {m.detail}"
    if m.code == "unknown_table":
        where = f"[{m.key}]"
    else:
        where = (f"[{'.'.join(m.tables)}] {m.key}" if m.tables else m.key) + (
            "" if m.value is None else f" = {toml_value(m.value)}"
        )
    return f"{m.file or 'config'}: {where}: {_what(m)}"


def _what(m: ConfigMistake) -> str:
    match m.code:
        case "unknown_table":
            hint = f"did you mean [{m.close}]? " if m.close else ""
            return f"unknown table; {hint}known tables: " + ", ".join(f"[{k}]" for k in m.known)
        case "unknown_key":
            hint = f'did you mean "{m.close}"? ' if m.close else ""
            return f"unknown key; {hint}[{'.'.join(m.tables)}] takes: " + ", ".join(m.known)
        case "wrong_type" if m.expected is not None:
            return "must be " + EXPECTED[m.expected]
        case "not_one_of":
            return "must be one of " + ", ".join(f'"{c}"' for c in m.choices)
        case "out_of_range" if m.bound is not None:
            op, limit = m.bound
            return f"must be {BOUNDS[op]} {int(limit) if limit.is_integer() else limit}"
        case "invalid" | "unreadable":
            return m.detail
        case "wrong_type" | "out_of_range" | "other":  # pydantic's own words
            return m.detail.replace("Input should be", "must be")
        case _:
            assert_never(m.code)
