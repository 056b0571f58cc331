"""A Job as a row of the `jobs` table, and back (JSON for the dicts and lists, the progress flattened)."""

from __future__ import annotations

import json
from collections.abc import Sequence
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
    data = dict(zip(keys or row.keys(), row, strict=True))  # dict(row) looks each column up by name: O(n²)
    progress = Progress(**{name: data[name] for name in PROGRESS_FIELDS})
    values: dict[str, Any] = {name: data[name] for name in JOB_FIELDS}
    for name in _JSON_COLUMNS:
        values[name] = {} if values[name] == "{}" else json.loads(values[name])  # most jobs: no env, no overrides
    for name in _LIST_COLUMNS:
        values[name] = tuple(json.loads(values[name]))
    values["kind"] = Kind(values["kind"])
    values["state"] = JobState(values["state"])
    values["export_state"] = ExportState(values["export_state"])
    return Job(progress=progress, **values)
