"""A Job as a row of the `jobs` table, and back (JSON for the dicts, lists and typed facts, the progress and the two
runs flattened: a run's fields are columns of the job's row, no join on the list pages)."""

from __future__ import annotations

import functools
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import fields
from operator import itemgetter
from typing import Any, TypeVar

import aiosqlite

from storage.actors import dump_actor, load_actor
from storage.failure_facts import dump_failure, load_failure
from storage.models import ExportState, Job, JobState, Kind, Progress, Purpose, Run, TryState
from storage.waiting import dump_reason, load_reason

_JSON_COLUMNS = {"overrides", "env"}
_LIST_COLUMNS = {"argv", "gpus", "export_gpus", "try_gpus"}
_FACTS: dict[str, Callable[[Any], str | None]] = {
    "failure": dump_failure,
    "stopped_by": dump_actor,
    "queue_reason": dump_reason,
}
# a field kept in a column of another name (the failure's JSON took the place of the words it replaced)
COLUMN = {"failure": "error_message"}
PROGRESS_FIELDS = [f.name for f in fields(Progress)]
RUN_FIELDS = [f.name for f in fields(Run)]
# each run's columns, in Run's field order: the training's carry the plain names (pid, log_path, ...)
RUN_COLUMNS: dict[Purpose, list[str]] = {
    "train": RUN_FIELDS,
    "export": [f"export_{n}" for n in RUN_FIELDS],
    "try": [f"try_{n}" for n in RUN_FIELDS],
}
_NESTED = {"progress", "train_run", "export_run", "try_run"}
JOB_FIELDS = [f.name for f in fields(Job) if f.name not in _NESTED]


def search_text(job: Job) -> str:
    """What a search looks in (job_search, storage/migrations.py): id, name, output folder and owner, lowercased,
    one a line."""
    return "\n".join((job.id, job.name, job.output_dir, job.user_id or "")).lower()


def to_row(job: Job) -> dict[str, Any]:
    row: dict[str, Any] = {"search_text": search_text(job)}
    for name in JOB_FIELDS:
        value = getattr(job, name)
        if name in _JSON_COLUMNS:
            value = json.dumps(value, sort_keys=True)
        elif name in _LIST_COLUMNS:
            value = json.dumps(list(value))
        elif name in _FACTS:
            value = _FACTS[name](value)
        row[COLUMN.get(name, name)] = value
    row["recipe"] = str(job.kind)  # a NOT NULL column of the first schema that nothing reads: it holds the kind
    for name in PROGRESS_FIELDS:
        row[name] = getattr(job.progress, name)
    for purpose, columns in RUN_COLUMNS.items():
        run = job.run(purpose)
        for name, column in zip(RUN_FIELDS, columns, strict=True):
            row[column] = getattr(run, name)
    return row


def from_row(row: aiosqlite.Row, keys: Sequence[str] | None = None) -> Job:
    """`keys`: the columns' names, when many rows of one query are read (a list page)."""
    job_at, progress_at, train_at, export_at, try_at = _getters(tuple(keys or row.keys()))
    values = list(job_at(row))  # in Job's field order
    values[_PROGRESS_SLOT] = _built(Progress, PROGRESS_FIELDS, progress_at(row))
    values[_TRAIN_SLOT] = _built(Run, RUN_FIELDS, train_at(row))
    values[_EXPORT_SLOT] = _built(Run, RUN_FIELDS, export_at(row))
    values[_TRY_SLOT] = _built(Run, RUN_FIELDS, try_at(row))
    for slot, convert in _CONVERT:
        values[slot] = convert(values[slot])
    return _built(Job, _ALL_JOB_FIELDS, values)


class JobRows:
    """Jobs as read before: a row equal, value for value, to one read already gives back the Job built then (a Job
    and what it holds are never changed in place). A list page re-reads mostly ended jobs: comparing a row costs
    ~1 µs, building its Job ~15. Bounded: the `size` rows read last."""

    def __init__(self, size: int = 2048) -> None:
        self._size = size
        self._jobs: OrderedDict[str, tuple[tuple[Any, ...], Job]] = OrderedDict()

    def job(self, row: aiosqlite.Row, keys: Sequence[str] | None = None) -> Job:
        keys = tuple(keys or row.keys())  # a tuple given (a list page) is taken as it is, not copied
        values = (keys, *row)
        job_id = row["id"]
        seen = self._jobs.get(job_id)
        if seen is not None and seen[0] == values:
            self._jobs.move_to_end(job_id)
            return seen[1]
        job = from_row(row, keys)
        self._jobs[job_id] = (values, job)
        self._jobs.move_to_end(job_id)
        if len(self._jobs) > self._size:
            self._jobs.popitem(last=False)
        return job


def _built(cls: type[_T], names: list[str], values: Sequence[Any]) -> _T:
    """`cls(*values)` without its __init__: a frozen dataclass's sets each field through object.__setattr__,
    half the cost of reading a row (a list page reads 50). Every field is given, in order, and nothing is
    computed in an __init__ of these classes, so the object is the same."""
    made = object.__new__(cls)
    made.__dict__.update(zip(names, values, strict=True))
    return made


_T = TypeVar("_T")
_Getter = Callable[[aiosqlite.Row], tuple[Any, ...]]


@functools.lru_cache(maxsize=8)
def _getters(keys: tuple[str, ...]) -> tuple[_Getter, _Getter, _Getter, _Getter, _Getter]:
    """Readers, by position, of a row of `keys`: Job's fields (the progress and the runs: placeholders),
    Progress's, the training run's and the export run's. itemgetter reads in C, and as each reads several
    fields each returns a tuple."""
    at = {name: i for i, name in enumerate(keys)}
    job_at = itemgetter(*(0 if name in _NESTED else at[COLUMN.get(name, name)] for name in _ALL_JOB_FIELDS))
    progress_at = itemgetter(*(at[name] for name in PROGRESS_FIELDS))
    train_at, export_at, try_at = (itemgetter(*(at[c] for c in RUN_COLUMNS[p])) for p in ("train", "export", "try"))
    return job_at, progress_at, train_at, export_at, try_at


def _json_dict(text: str) -> dict[str, str]:
    return {} if text == "{}" else dict(json.loads(text))  # most jobs: no env, no overrides


def _json_tuple(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text))


_ALL_JOB_FIELDS = [f.name for f in fields(Job)]
_PROGRESS_SLOT = _ALL_JOB_FIELDS.index("progress")
_TRAIN_SLOT, _EXPORT_SLOT = _ALL_JOB_FIELDS.index("train_run"), _ALL_JOB_FIELDS.index("export_run")
_TRY_SLOT = _ALL_JOB_FIELDS.index("try_run")
_KINDS, _STATES, _EXPORT_STATES = ({m.value: m for m in enum} for enum in (Kind, JobState, ExportState))
_TRY_STATES = {m.value: m for m in TryState}
_CONVERT: list[tuple[int, Callable[[Any], Any]]] = [
    (_ALL_JOB_FIELDS.index(name), convert)
    for name, convert in (
        ("kind", _KINDS.__getitem__),
        ("state", _STATES.__getitem__),
        ("export_state", _EXPORT_STATES.__getitem__),
        ("env", _json_dict),
        ("overrides", _json_dict),
        ("argv", _json_tuple),
        ("gpus", _json_tuple),
        ("export_gpus", _json_tuple),
        ("failure", load_failure),
        ("stopped_by", load_actor),
        ("queue_reason", load_reason),
        ("try_state", _TRY_STATES.__getitem__),
        ("try_gpus", _json_tuple),
    )
]
