"""A job request, one type for every front end, and `check_request`, the one function that judges it.

Slack and the console parse text into a JobRequest (bot/chat/grammar.py), the HTTP API maps its JSON body to one, the
web form its fields. The check gives each value its one canonical form where it has one (GPU numbers, a number's
text, a folder's `.` and `..` folded, a local model's real path) and refuses anything else with a typed error that
names the field, the rule and what would do (InvalidField; OutsideRoot for a path that leads out of its root):
each front end words it its own way. A value is never changed into another one: a folder name is kept byte for
byte, and whatever the rules refuse is refused, not repaired.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Protocol

from runner.paths import OutsideRoot, confine
from runner.profiles import PROFILES
from runner.recipes import VLM_USER_KEYS
from storage.errors import JobError
from storage.jobs import JobStore
from storage.models import Job, Kind

MAX_GPUS, MAX_GPU_INDEX = 16, 255
MAX_OUT_LEN, MAX_SOURCE_LEN = 255, 255  # characters
MAX_JOB_NAME, MAX_NOTE = 100, 2000  # characters
NAME_MAX, PATH_MAX = 255, 4096  # bytes, as Linux counts them
INT_LIMITS = {
    "lora_rank": 1024,
    "lora_alpha": 4096,
    "max_length": 131072,
    "batch_size": 1024,
    "max_pixels": 100_000_000,
}  # each from 1
FLOAT_LIMITS = {"epochs": 1000.0, "learning_rate": 1.0}  # each above 0
SOURCE_KEYS = ("model", "dataset")
OVERRIDE_KEYS: tuple[str, ...] = tuple(VLM_USER_KEYS)  # what a VLM request may set; an LLM request: nothing
_FLOAT = re.compile(r"(\d+\.?\d*|\.\d+)([eE][-+]?\d{1,3})?")
_SOURCE_ITEM = re.compile(r"[^\s\x00-\x1f\x7f,\x60'\"]+")  # \x60: a backtick
_CTRL = re.compile(r"[\x00-\x1f\x7f]")
# what a name or a note may not hold: control characters (C0, DEL, C1), line and paragraph separators, and the
# bidirectional overrides and isolates, which make text read in another order than it is stored
_NAME_CTRL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NOTE_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")  # lines, tabs
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_HUB = {"model": re.compile(f"{_PART}/{_PART}"), "dataset": re.compile(f"{_PART}/{_PART}(:{_PART})?")}
_SAMPLES = re.compile(r"#[0-9]{1,9}$")
_ROOT_KEYS = {"output_dir": "paths.output_root", "model": "paths.model_roots", "dataset": "paths.data_roots"}


@dataclass(frozen=True)
class JobRequest:
    """What someone asks for. `output_dir` relative is taken from the config's base_dir; `gpus` are GPU numbers
    as text ("0", "1") or ("cpu",); `overrides` map a VLM key (OVERRIDE_KEYS) to its value as text (a dataset:
    comma-separated). `hold`: record the job only (created), `start` starts it. `name`: what people call the job
    (None: the output folder's last part)."""

    kind: Kind
    gpus: tuple[str, ...]
    output_dir: Path
    overrides: Mapping[str, str] = field(default_factory=dict)
    user_id: str | None = None
    channel_id: str | None = None
    profile: str = "fast"
    hold: bool = False
    name: str | None = None


class Roots(Protocol):
    """Where a request's paths may lead (runner.config.Config is one)."""

    @property
    def base_dir(self) -> Path: ...
    @property
    def output_root(self) -> Path: ...
    @property
    def model_roots(self) -> tuple[Path, ...]: ...
    @property
    def data_roots(self) -> tuple[Path, ...]: ...


class Rule(StrEnum):
    """Why a value was refused (OutsideRoot aside)."""

    EMPTY_ITEM = "empty_item"  # gpus: "0,,1"
    CPU_MIXED = "cpu_mixed"  # gpus: "cpu,0"
    NEGATIVE = "negative"  # gpus: "-1"
    NOT_A_GPU = "not_a_gpu"  # gpus: "zero", "1.5"
    GPU_ABOVE_MAX = "gpu_above_max"  # gpus: above MAX_GPU_INDEX (`limit`)
    GPU_TWICE = "gpu_twice"  # gpus: "0,0"
    TOO_MANY_GPUS = "too_many_gpus"  # gpus: `size` of them, at most `limit`
    EMPTY = "empty"  # name: nothing, or only spaces
    CONTROL_CHARACTER = "control_character"  # output_dir, name, note: a newline, tab or NUL (a note: lines, tabs)
    BROKEN_CHARACTER = "broken_character"  # a lone surrogate: no file name can hold it
    TOO_LONG = "too_long"  # `size` characters, at most `limit`
    NAME_TOO_LONG = "name_too_long"  # output_dir: a folder name of `size` bytes, at most `limit`
    PATH_TOO_LONG = "path_too_long"  # output_dir: a path of `size` bytes, under `limit`
    NOT_ALLOWED = "not_allowed"  # profile, or an override key: one of `allowed`
    WHOLE_NUMBER = "whole_number"  # from 1 to `limit`
    NUMBER = "number"  # above 0, at most `limit`
    NOT_A_SOURCE = "not_a_source"  # model/dataset `item`: no spaces, quotes, commas or leading `-`


class InvalidField(JobError):
    """`field` (a JobRequest field, or an override key) holds `value`, which `rule` refuses. `limit`, `allowed`
    and `size` say what would do and what was given; `item`: the one item of a list that was wrong."""

    def __init__(
        self,
        field: str,
        value: str,
        rule: Rule,
        *,
        limit: float | None = None,
        allowed: tuple[str, ...] = (),
        size: int | None = None,
        item: str | None = None,
    ) -> None:
        super().__init__(f"{field} {value!r}: {rule}")
        self.field, self.value, self.rule = field, value, rule
        self.limit, self.allowed, self.size, self.item = limit, allowed, size, item


class SourceOutside(OutsideRoot):
    """A model or dataset `item` (as given, with its `#N`) that is no hub id and leads outside its roots."""

    def __init__(self, field: str, item: str, path: Path, resolved: Path, roots: tuple[Path, ...]) -> None:
        super().__init__(field, path, resolved, roots, _ROOT_KEYS[field])
        self.item = item


class IdempotencyKeyReused(JobError):
    """`key` made job `job_id` from another request: a retry must send the same request (Stripe's rule)."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(f"idempotency key made job {job_id} from another request")
        self.key, self.job_id = key, job_id


def check_request(req: JobRequest, roots: Roots, *, resolve: bool = True) -> JobRequest:
    """`req` with each value in its canonical form, or the first field's InvalidField / OutsideRoot.
    `resolve=False` judges the output folder by its text alone (a parser that reads no disk); creating a job
    resolves it on disk (runner.paths.confine: symlinks followed)."""
    gpus = _gpus(req.gpus)
    output_dir = _output_dir(req.output_dir, roots, resolve)
    if req.profile not in PROFILES:
        raise InvalidField("profile", req.profile, Rule.NOT_ALLOWED, allowed=PROFILES)
    allowed = OVERRIDE_KEYS if req.kind is Kind.VLM else ()
    overrides = {}
    for key, value in req.overrides.items():
        if key not in allowed:
            raise InvalidField(key, value, Rule.NOT_ALLOWED, allowed=allowed)
        overrides[key] = _override(key, value, roots)
    name = None if req.name is None else check_text("name", req.name, MAX_JOB_NAME)
    return replace(req, gpus=gpus, output_dir=output_dir, overrides=overrides, name=name)


def check_text(field: str, text: str, limit: int) -> str:
    """A job's name (`field` "name") or note ("note") as given, or InvalidField: any Unicode, at most `limit`
    characters, none of them a control character (a note may hold line breaks and tabs). A name holds more than
    spaces; a note may be empty (no note)."""
    ctrl = _NOTE_CTRL if field == "note" else _NAME_CTRL
    rule = next(
        (
            rule
            for bad, rule in (
                (field != "note" and not text.strip(), Rule.EMPTY),
                (bool(_SURROGATE.search(text)), Rule.BROKEN_CHARACTER),
                (bool(ctrl.search(text)), Rule.CONTROL_CHARACTER),
                (len(text) > limit, Rule.TOO_LONG),
            )
            if bad
        ),
        None,
    )
    if rule is not None:
        raise InvalidField(field, text, rule, limit=limit if rule is Rule.TOO_LONG else None, size=len(text))
    return text


def field_problems(req: JobRequest, roots: Roots, *, resolve: bool = True) -> list[InvalidField | OutsideRoot]:
    """Every field's refusal at once, in the request's field order (a form shows each by its field):
    `check_request` raises the first of them."""
    problems: list[InvalidField | OutsideRoot] = []

    def judge(check: Callable[[], object]) -> None:
        try:
            check()
        except (InvalidField, OutsideRoot) as exc:
            problems.append(exc)

    judge(partial(_gpus, req.gpus))
    judge(partial(_output_dir, req.output_dir, roots, resolve))
    if req.profile not in PROFILES:
        problems.append(InvalidField("profile", req.profile, Rule.NOT_ALLOWED, allowed=PROFILES))
    allowed = OVERRIDE_KEYS if req.kind is Kind.VLM else ()
    for key, value in req.overrides.items():
        if key not in allowed:
            problems.append(InvalidField(key, value, Rule.NOT_ALLOWED, allowed=allowed))
        else:
            judge(partial(_override, key, value, roots))
    if req.name is not None:
        judge(partial(check_text, "name", req.name, MAX_JOB_NAME))
    return problems


def fingerprint(req: JobRequest) -> str:
    """What makes two checked requests the same job (who sent it aside): kept with an idempotency key."""
    parts: list[object] = [
        str(req.kind),
        list(req.gpus),
        str(req.output_dir),
        sorted(req.overrides.items()),
        req.profile,
        req.hold,
    ]
    parts += [] if req.name is None else [req.name]  # an unnamed request keeps the fingerprint it had before names
    canonical = json.dumps(parts, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


async def made_under(store: JobStore, key: str, req: JobRequest) -> Job | None:
    """The job an idempotency key made, if any; IdempotencyKeyReused when it was made from another request
    (`req` checked). Jobs made before fingerprints were kept match any request."""
    first = await store.by_idempotency_key(key)
    if first is not None and first.idempotency_fingerprint not in (None, fingerprint(req)):
        raise IdempotencyKeyReused(key, first.id)
    return first


def _gpus(ids: tuple[str, ...]) -> tuple[str, ...]:
    """GPU numbers in their canonical form ("007" is GPU 7); nothing else is read into them (no space, no case)."""
    numbers = [int(i) for i in ids if i.isascii() and i.isdigit() and len(i) < 10]
    value = ",".join(ids)
    rule = next(
        (
            rule
            for bad, rule in (
                (not ids or "" in ids, Rule.EMPTY_ITEM),
                ("cpu" in ids and len(ids) > 1, Rule.CPU_MIXED),
                (any(i.startswith("-") and i[1:].isdigit() for i in ids), Rule.NEGATIVE),
                (ids != ("cpu",) and len(numbers) < len(ids), Rule.NOT_A_GPU),
                (any(n > MAX_GPU_INDEX for n in numbers), Rule.GPU_ABOVE_MAX),
                (len(set(numbers)) < len(numbers), Rule.GPU_TWICE),
                (len(ids) > MAX_GPUS, Rule.TOO_MANY_GPUS),
            )
            if bad
        ),
        None,
    )
    if rule is not None:
        limit = {Rule.GPU_ABOVE_MAX: MAX_GPU_INDEX, Rule.TOO_MANY_GPUS: MAX_GPUS}.get(rule)
        raise InvalidField("gpus", value, rule, limit=limit, size=len(ids))
    return ("cpu",) if ids == ("cpu",) else tuple(map(str, numbers))


def folded(path: Path) -> Path:
    """A path with `//`, `.` and `..` folded, as text (no disk read)."""
    return Path(os.path.normpath(re.sub("/+", "/", str(path))))


def _output_dir(path: Path, roots: Roots, resolve: bool) -> Path:
    text, base, root = str(path), roots.base_dir, folded(roots.base_dir / roots.output_root)
    target = folded(base / path)
    longest = max(map(_bytes, target.parts), default=0)
    problem = next(
        (
            (rule, limit, size)
            for bad, rule, limit, size in (
                (bool(_CTRL.search(text)), Rule.CONTROL_CHARACTER, None, None),
                (bool(_SURROGATE.search(text)), Rule.BROKEN_CHARACTER, None, None),
                (len(text) > MAX_OUT_LEN, Rule.TOO_LONG, MAX_OUT_LEN, len(text)),
                (longest > NAME_MAX, Rule.NAME_TOO_LONG, NAME_MAX, longest),
                (_bytes(str(target)) >= PATH_MAX, Rule.PATH_TOO_LONG, PATH_MAX - 1, _bytes(str(target))),
            )
            if bad
        ),
        None,
    )
    if problem is not None:
        rule, limit, size = problem
        raise InvalidField("output_dir", text, rule, limit=limit, size=size)
    if target == root or not target.is_relative_to(root):  # the text first: `../x` is named as it reads
        raise OutsideRoot("output_dir", path, target, (root,), _ROOT_KEYS["output_dir"])
    if resolve:
        confine("output_dir", target, (root,), base, root_key=_ROOT_KEYS["output_dir"])
    return target


def _override(key: str, value: str, roots: Roots) -> str:
    if key in INT_LIMITS:
        top = INT_LIMITS[key]
        if not (value.isascii() and value.isdigit() and len(value) < 12 and 1 <= int(value) <= top):
            raise InvalidField(key, value, Rule.WHOLE_NUMBER, limit=top)
        return str(int(value))
    if key in FLOAT_LIMITS:
        ceiling = FLOAT_LIMITS[key]
        number = float(value) if _FLOAT.fullmatch(value) else math.nan
        if not 0 < number <= ceiling:
            raise InvalidField(key, value, Rule.NUMBER, limit=ceiling)
        return str(int(number)) if number.is_integer() else repr(number)
    items = value.split(",") if key == "dataset" else [value]
    for item in items:  # swift reads a value starting with `-` as an option of its own
        if _SURROGATE.search(item):
            raise InvalidField(key, value, Rule.BROKEN_CHARACTER, item=item)
        if not _SOURCE_ITEM.fullmatch(item) or item.startswith("-") or len(item) > MAX_SOURCE_LEN:
            raise InvalidField(key, value, Rule.NOT_A_SOURCE, limit=MAX_SOURCE_LEN, item=item)
    return ",".join(_source(key, item, roots) for item in items)


def _source(key: str, item: str, roots: Roots) -> str:
    """A hub id as given, or a local path made absolute and real when it lies inside the key's roots. A
    hub-id-shaped value that names an existing local path is a path (swift would read it)."""
    samples = _SAMPLES.search(item) if key == "dataset" else None
    name = item[: samples.start()] if samples else item
    suffix = samples.group() if samples else ""
    base = roots.base_dir
    if _HUB[key].fullmatch(name) and ".." not in name.split("/") and not os.path.lexists(base / name):
        return item
    allowed = roots.model_roots if key == "model" else roots.data_roots
    try:
        return str(confine(key, Path(name), allowed, base, root_key=_ROOT_KEYS[key], root_itself=True)) + suffix
    except OutsideRoot as err:
        raise SourceOutside(key, item, Path(name), err.resolved, tuple(allowed)) from None


def _bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))
