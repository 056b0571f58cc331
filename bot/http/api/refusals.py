"""How a refusal reads over HTTP: for an HTTP client, not a chat. Field names as the body spells them, the rule
and its bound, and the call to make next (`POST /training/jobs/k3x9q/stop`); never the chat's words (`/train ...`,
`out=`, backticks). One `Refusal` for each typed error from runner/ and storage/.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bot.http.api.create import body_field, endpoint
from bot.words import failures as failure_words
from bot.words.refusals import gpus_missing
from runner.errors import (
    AlreadyExporting,
    AlreadySucceeded,
    CannotLaunch,
    ExportRunning,
    GpuMissing,
    NoCheckpoint,
    NotAllowed,
    NotEnded,
    NothingToStop,
    NotRestartable,
    OutputInUse,
)
from runner.job_request import IdempotencyKeyReused, InvalidField, Rule, SourceOutside, folded
from runner.paths import OutsideRoot
from storage.errors import JobNotFound, StaleState, StillActive
from storage.models import JobState, Kind

_RULES = {
    Rule.EMPTY: "is empty or only spaces: send a few words",
    Rule.EMPTY_ITEM: 'has an empty entry: GPU numbers are separated by single commas, e.g. "0,1"',
    Rule.CPU_MIXED: 'mixes "cpu" with GPU numbers: send "cpu" alone, or GPU numbers',
    Rule.NEGATIVE: "has a negative number: GPUs count from 0",
    Rule.NOT_A_GPU: 'is not a GPU list: send "0", "0,1", "cpu" or a GPU number',
    Rule.GPU_ABOVE_MAX: "names a GPU above {limit:g} (GET /gpus lists this machine's)",
    Rule.GPU_TWICE: "names a GPU twice",
    Rule.TOO_MANY_GPUS: "names {size} GPUs; a job uses at most {limit:g}",
    Rule.CONTROL_CHARACTER: "contains a control character (a newline, tab or NUL)",
    Rule.BROKEN_CHARACTER: "holds a lone surrogate, which no file name can hold",
    Rule.TOO_LONG: "is {size} characters long; at most {limit:g}",
    Rule.NAME_TOO_LONG: "has a folder name of {size} bytes in UTF-8; at most {limit:g}",
    Rule.PATH_TOO_LONG: "makes a path of {size} bytes; at most {limit:g}",
    Rule.WHOLE_NUMBER: "is not a whole number from 1 to {limit:g}",
    Rule.NUMBER: "is not a number above 0 and at most {limit:g}",
    Rule.NOT_A_SOURCE: 'is not a hub id (e.g. "Qwen/Qwen2.5-VL-7B-Instruct") or a path: no spaces, quotes, commas '
    'or leading "-", at most {limit:g} characters',
}


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    error: str
    endpoint: str | None = None
    fields: tuple[dict[str, Any], ...] = field(default=())


def shown(value: object, limit: int = 200) -> str:
    """A value as JSON (quoted, escaped: no character of it can pass for our own words), cut at `limit`."""
    text = json.dumps(value, ensure_ascii=False, default=_as_text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _as_text(value: object) -> str:
    """What JSON cannot hold, e.g. a body sent without `Content-Type: application/json` (pydantic keeps it as bytes)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else repr(value)


def field_error(err: InvalidField | OutsideRoot) -> dict[str, Any]:
    """One field the check refused, as ErrorBody's `fields` item."""
    name = body_field(err.field)
    if isinstance(err, OutsideRoot):
        value = err.item if isinstance(err, SourceOutside) else str(err.path)
        roots = [str(r) for r in err.roots]
        itself = not isinstance(err, SourceOutside) and any(err.resolved == folded(r) for r in err.roots)
        if isinstance(err, SourceOutside):
            where = f"allowed only inside {', '.join(roots)}" if roots else "empty: no local path is allowed"
            message = (
                f"{name} {shown(value)} is not a hub id, and as a local path it leads to {err.resolved}, "
                f"outside [{err.root_key.replace('.', '] ')} ({where})"
            )
        elif itself:
            message = f"{name} {shown(value)} is the output root itself: send a folder inside it"
        else:
            message = (
                f"{name} {shown(value)} leads to {err.resolved}, outside the output root {roots[0]} "
                f"([paths] output_root): send a folder inside it"
            )
        return {
            "field": name,
            "rule": "root_itself" if itself else "outside_root",
            "message": message,
            "value": value[:200],
            "roots": roots,
            "resolved": str(err.resolved),
        }
    item = f" (item {shown(err.item)})" if err.item is not None and err.item != err.value else ""
    if err.rule is Rule.NOT_ALLOWED:
        words = f"is not one of {', '.join(map(shown, err.allowed))}" if err.allowed else "may not be set here"
    elif err.field == "note" and err.rule is Rule.CONTROL_CHARACTER:
        words = "contains a control character (line breaks and tabs are the only ones a note may hold)"
    else:
        words = _RULES[err.rule].format(limit=err.limit or 0, size=err.size)
    return {
        "field": name,
        "rule": str(err.rule),
        "message": f"{name} {shown(err.value)}{item} {words}",
        "value": err.value[:200],
        "limit": err.limit,
        "allowed": list(err.allowed) or None,
    }


def refusal(exc: Exception, kind: Kind | None = None) -> Refusal:
    """`exc` over HTTP; `kind`: the recipe of the create request that met it, if one did."""
    match exc:
        case InvalidField() | OutsideRoot():
            problem = field_error(exc)
            return Refusal(422, "invalid_request", problem["message"], _create(kind), (problem,))
        case GpuMissing(missing=missing, have=have):
            fact = {
                "field": "gpu_id",
                "rule": "gpu_missing",
                "message": gpus_missing(exc),
                "value": ",".join(missing),
                "allowed": list(have) or ["cpu"],
            }
            return Refusal(
                422, "invalid_request", f"gpu_id: {gpus_missing(exc)} (GET /gpus lists them)", _create(kind), (fact,)
            )
        case IdempotencyKeyReused(key=key, job_id=job_id):
            sent = key.partition("\x00")[2] or key  # stored with its user in front
            fact = {
                "field": "Idempotency-Key",
                "rule": "reused",
                "value": sent,
                "message": f"Idempotency-Key {shown(sent)} made job {job_id} from another request",
            }
            return Refusal(
                422,
                "idempotency_key_reused",
                f"Idempotency-Key {shown(sent)} already made job {job_id} from another request: send a "
                f"new key for a new request (the same request with this key gets job {job_id} back)",
                f"GET /training/jobs/{job_id}",
                (fact,),
            )
        case OutputInUse(output_dir=output_dir, job_id=job_id):
            fact = {
                "field": "output_dir",
                "rule": "in_use",
                "value": str(output_dir),
                "message": f"job {job_id} writes to {output_dir}",
            }
            return Refusal(
                409,
                "output_in_use",
                f"job {job_id} is still active and writes to {output_dir}: two jobs in one folder would "
                f"mix their checkpoints. Send another output_dir (e.g. {str(output_dir).rstrip('/')}-2), "
                f"or stop job {job_id} first",
                f"POST /training/jobs/{job_id}/stop",
                (fact,),
            )
        case JobNotFound(job_id=job_id):
            return Refusal(404, "not_found", f"there is no job {job_id}", "GET /training/all/jobs")
        case NotAllowed(job_id=None):
            return Refusal(
                403,
                "forbidden",
                "not allowed to create jobs: an admin adds your user id to [access] "
                "users (or a group of yours to [access] groups) in trainbot's config",
            )
        case NotAllowed(action=action, job_id=str(job_id), owner=owner):
            return Refusal(
                403,
                "forbidden",
                f"only {owner or 'its creator'} (who created job {job_id}) or an admin may {action} it",
                f"GET /training/jobs/{job_id}",
            )
    return _conflict(exc, kind)


def _conflict(exc: Exception, kind: Kind | None) -> Refusal:
    """What a job's state does not allow (409), with the call that makes sense now."""
    match exc:
        case StaleState(job_id=job_id, state=state, wanted=wanted):
            return _409(f"job {job_id} is {state}, not {' or '.join(wanted)}", f"GET /training/jobs/{job_id}")
        case AlreadySucceeded(job_id=job_id, kind=done_kind):
            return _409(
                f"job {job_id} already succeeded: a new run is a new job",
                endpoint(Kind(done_kind)) if done_kind in ("llm", "vlm") else None,
            )
        case NotRestartable(job_id=job_id, state=state):
            return _409(f"job {job_id} is {state}: only a stopped or failed job can be started again", _status(job_id))
        case NothingToStop(job_id=job_id, state=JobState.CREATED):
            return _409(
                f"job {job_id} was never started; nothing to stop (delete it, or start it)",
                f"DELETE /training/jobs/{job_id}",
            )
        case NothingToStop(job_id=job_id, state=state):
            return _409(f"job {job_id} has already ended ({state}); nothing to stop", f"GET /training/jobs/{job_id}")
        case NotEnded(job_id=job_id, state=JobState.CREATED):
            return _409(
                f"job {job_id} was never started: start it, and export it once it has ended",
                f"POST /training/jobs/{job_id}/start",
            )
        case NotEnded(job_id=job_id, state=state):
            return _409(f"job {job_id} is {state}: export it once it has ended (or stop it first)", _status(job_id))
        case ExportRunning(job_id=job_id):
            return _409(f"job {job_id} is being exported; delete it when the export has ended", _status(job_id))
        case AlreadyExporting(job_id=job_id):
            return _409(f"job {job_id} is already being exported", _status(job_id))
        case NoCheckpoint(job_id=job_id):
            return _409(f"job {job_id} has no checkpoint to export yet", _status(job_id))
        case StillActive(job_id=job_id, state=state):
            return _409(f"job {job_id} is {state}: stop it first", f"POST /training/jobs/{job_id}/stop")
        case CannotLaunch(job_id=job_id, refusal=why):
            hint = failure_words.reason_hint(why)
            return _409(
                f"job {job_id} could not start: {failure_words.reason_summary(why)}" + (f" ({hint})" if hint else ""),
                f"GET /training/jobs/{job_id}",
            )
    return _409(str(exc), _create(kind))


def _409(error: str, call: str | None) -> Refusal:
    return Refusal(409, "conflict", error, call)


def _status(job_id: str) -> str:
    return f"GET /training/jobs/{job_id}/status"


def _create(kind: Kind | None) -> str | None:
    return endpoint(kind) if kind is not None else None
