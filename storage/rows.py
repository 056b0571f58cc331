"""A Job as a row of the `jobs` table, and back (JSON for the dicts and lists, the progress flattened)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

import aiosqlite

from storage.models import ExportState, Job, JobState, Kind, Progress

_JSON_COLUMNS = {"overrides", "env"}
_LIST_COLUMNS = {"argv", "gpus"}
PROGRESS_FIELDS = [f.name for f in fields(Progress)]
JOB_FIELDS = [f.name for f in fields(Job) if f.name != "progress"]


def to_row(job: Job) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name in JOB_FIELDS:
        value = getattr(job, name)
        if name in _JSON_COLUMNS:
            value = json.dumps(value, sort_keys=True)
        elif name in _LIST_COLUMNS:
            value = json.dumps(list(value))
        row[name] = value
    for name in PROGRESS_FIELDS:
        row[name] = getattr(job.progress, name)
    return row


def from_row(row: aiosqlite.Row, keys: Sequence[str] | None = None) -> Job:
    """`keys`: the columns' names, when many rows of one query are read (a list page)."""
    job_at, progress_at = _positions(tuple(keys or row.keys()))
    values = [row[i] for i in job_at]  # in Job's field order, so Job(*values) needs no names
    values[_PROGRESS_SLOT] = Progress(*[row[i] for i in progress_at])
    for slot, convert in _CONVERT:
        values[slot] = convert(values[slot])
    return Job(*values)


@functools.lru_cache(maxsize=8)
def _positions(keys: tuple[str, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Where each of Job's fields (the progress: a placeholder) and Progress's fields sit in a row of `keys`."""
    at = {name: i for i, name in enumerate(keys)}
    job_at = tuple(0 if name == "progress" else at[name] for name in _ALL_JOB_FIELDS)
    return job_at, tuple(at[name] for name in PROGRESS_FIELDS)


def _json_dict(text: str) -> dict[str, str]:
    return {} if text == "{}" else dict(json.loads(text))  # most jobs: no env, no overrides


def _json_tuple(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text))


_ALL_JOB_FIELDS = [f.name for f in fields(Job)]
_PROGRESS_SLOT = _ALL_JOB_FIELDS.index("progress")
_KINDS, _STATES, _EXPORT_STATES = ({m.value: m for m in enum} for enum in (Kind, JobState, ExportState))
_CONVERT: list[tuple[int, Callable[[Any], Any]]] = [
    (_ALL_JOB_FIELDS.index(name), convert) for name, convert in (
        ("kind", _KINDS.__getitem__), ("state", _STATES.__getitem__), ("export_state", _EXPORT_STATES.__getitem__),
        ("env", _json_dict), ("overrides", _json_dict), ("argv", _json_tuple), ("gpus", _json_tuple))]
