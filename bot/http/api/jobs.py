"""`/training/...`: the seed's job endpoints. Each route is an adapter over the job service
(runner/service.py), where access and the rules are checked."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from pydantic import BaseModel

from bot.http.api import cursors
from bot.http.api.bodies import LLMJobCreate, NoteBody, VLMJobCreate
from bot.http.api.create import example_body, to_request
from bot.http.api.errors import CreateRefused
from bot.http.api.refusals import refusal
from bot.http.api.schemas import (
    Deleted,
    ErrorBody,
    JobDetail,
    JobList,
    JobOut,
    JobStatus,
    MetricsOut,
    job_detail,
    job_out,
    job_status,
    metrics_out,
)
from bot.http.auth import CurrentUser, Principal
from bot.http.context import ApiContext, get_context
from runner.actions import Action
from runner.errors import GpuMissing, OutputInUse
from runner.job_request import MAX_JOB_NAME, IdempotencyKeyReused, InvalidField
from runner.metrics import READER
from runner.paths import OutsideRoot
from storage.listing import JobFilter, Sort
from storage.models import Job, JobState, Kind

Ctx = Annotated[ApiContext, Depends(get_context)]
JobId = Annotated[str, Path(max_length=100, description="the 5-character job id, e.g. k3x9q")]
MAX_PAGE = 500
_MEANS = {
    401: "no token, or one that is not valid",
    403: "the access rules refuse it",
    404: "no such job",
    409: "the job's state does not allow it (`endpoint`: the call that makes sense now)",
    422: "bad input: `fields` names each field that was wrong (its rule and bound), `example` is a body that "
    "would work, `endpoint` the call to make with it; or an Idempotency-Key sent with another request",
}
ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody, "description": means} for code, means in _MEANS.items()
}

router = APIRouter(prefix="/training", tags=["jobs"], responses=ERRORS)


async def _create(
    kind: Kind, body: LLMJobCreate, ctx: ApiContext, user: Principal, key: str | None, response: Response
) -> JobOut:
    """The body is mapped to a JobRequest field by field and checked by the runner, as Slack's and the form's are.
    An Idempotency-Key finds the job it made from the same request (200); from another request: 422."""
    req = to_request(kind, body, user.user_id, ctx.config.http.notify_channel)
    stored_key = f"{user.user_id}\x00{key}" if key else None  # one client's key never finds another's job
    try:
        submitted = await ctx.runtime.jobs.create(req, user.caller(), idempotency_key=stored_key)
    except (InvalidField, OutsideRoot, GpuMissing, IdempotencyKeyReused, OutputInUse) as exc:
        bad = [f["field"] for f in refusal(exc, kind).fields]
        gpus = exc.suggest if isinstance(exc, GpuMissing) else ()
        raise CreateRefused(
            exc, kind, example_body(kind, ctx.config, body.model_dump(exclude_unset=True), bad, gpus)
        ) from exc
    response.status_code = 201 if submitted.new else 200
    return job_out(submitted.job)


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="a retried create with the same key and the same body answers 200 with the job the first one made "
        "(nothing new is created); the same key with another body, or on the other create endpoint, "
        "answers 422 (`code`: `idempotency_key_reused`) naming the key. Keys are per user.",
    ),
]


@router.post("/llm/jobs", status_code=201, response_model=JobOut)
async def create_llm_job(
    body: LLMJobCreate, ctx: Ctx, user: CurrentUser, response: Response, idempotency_key: IdempotencyKey = None
) -> JobOut:
    """Create an LLM job on the fixed recipe (created, not started, unless `start` is true). Each value is taken as
    sent, with strict types (a string is a value byte for byte, never re-read as settings): what the rules refuse is
    a 422 naming the field, never repaired. 201 a new job; 200 the job an identical request with the same
    Idempotency-Key made."""
    return await _create(Kind.LLM, body, ctx, user, idempotency_key, response)


@router.post("/jobs", status_code=201, response_model=JobOut)
async def create_vlm_job(
    body: VLMJobCreate, ctx: Ctx, user: CurrentUser, response: Response, idempotency_key: IdempotencyKey = None
) -> JobOut:
    """Create a VLM job with the overrides the VLM recipe allows; values as for an LLM job (strict types, taken as
    sent, bounds in the schema, a refusal names the field)."""
    return await _create(Kind.VLM, body, ctx, user, idempotency_key, response)


def _json(model: BaseModel) -> Response:
    """Serialised once, by the model that built it (FastAPI would validate a returned model again: a list of
    500 jobs is the hot path of scripts that poll)."""
    return Response(model.model_dump_json(), media_type="application/json")


@dataclass(frozen=True)
class ListQuery:
    """What every list endpoint takes besides its kind."""

    status: JobState | None
    limit: int
    cursor: str | None
    q: str | None
    sort: Sort
    owner: str | None


async def _list(ctx: ApiContext, kind: Kind | None, query: ListQuery) -> Response:
    store = ctx.runtime.store
    after = await cursors.decode(query.cursor, store, query.sort) if query.cursor is not None else None
    where = JobFilter(kind, (query.status,) if query.status else None, query.owner, query.q)
    page = await store.page(where, sort=query.sort, limit=query.limit, after=after)
    last = cursors.encode(page.next, query.sort) if page.next else None
    return _json(JobList(jobs=[job_out(j) for j in page.jobs], next_cursor=last))


def _sort(sort: str) -> Sort:
    found = cursors.parse_sort(sort)
    assert found is not None  # the Query's pattern
    return found


def list_query(
    status: Annotated[JobState | None, Query(description="only jobs in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[
        str | None,
        Query(
            max_length=cursors.MAX_LENGTH,
            description=(
                "`next_cursor` of the page before, passed as it came: a position in the list, so jobs deleted or "
                "created meanwhile neither end the list nor show twice. A job id (the cursors of older versions) "
                "works while that job exists; an unknown cursor, or one of a list sorted otherwise, is a 422"
            ),
        ),
    ] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=MAX_JOB_NAME,
            description=(
                "only jobs whose name, output folder, owner or id holds this text, in any case (e.g. `sweep`)"
            ),
        ),
    ] = None,
    sort: Annotated[
        str,
        Query(
            pattern="^(" + "|".join(cursors.SORTS) + ")$",
            description=(
                "the order: `created`, `duration` (from start to end) or `loss` (the last logged train loss), `-` in "
                "front for the largest first; jobs without a duration or a loss come last. Default `-created`, newest "
                "first"
            ),
        ),
    ] = "-created",
    owner: Annotated[str | None, Query(max_length=100, description="only jobs of this user id")] = None,
) -> ListQuery:
    return ListQuery(status, limit, cursor, q, _sort(sort), owner)


Listing = Annotated[ListQuery, Depends(list_query)]


@router.get("/llm/jobs", response_model=JobList)
async def list_llm_jobs(ctx: Ctx, user: CurrentUser, query: Listing) -> Response:
    """LLM jobs, newest first (or by `sort`), `limit` a page; `next_cursor` fetches the next."""
    return await _list(ctx, Kind.LLM, query)


@router.get("/jobs", response_model=JobList)
async def list_vlm_jobs(ctx: Ctx, user: CurrentUser, query: Listing) -> Response:
    """VLM jobs, newest first (or by `sort`), `limit` a page; `next_cursor` fetches the next."""
    return await _list(ctx, Kind.VLM, query)


@router.get("/all/jobs", response_model=JobList)
async def list_all_jobs(ctx: Ctx, user: CurrentUser, query: Listing) -> Response:
    """Every job, newest first (or by `sort`), `limit` a page; `next_cursor` fetches the next."""
    return await _list(ctx, None, query)


async def _act(ctx: ApiContext, job_id: str, user: Principal, action: Action) -> Job:
    job = await ctx.runtime.jobs.act(job_id, action, user.caller())
    assert job is not None  # only a delete forgets the job
    return job


@router.post("/jobs/{job_id}/start")
async def start_job(job_id: JobId, ctx: Ctx, user: CurrentUser) -> JobOut:
    """Start a created job, or run a stopped or failed one again (from its last checkpoint)."""
    return job_out(await _act(ctx, job_id, user, Action.START))


@router.post("/jobs/{job_id}/stop")
async def stop_job(job_id: JobId, ctx: Ctx, user: CurrentUser) -> JobOut:
    return job_out(await _act(ctx, job_id, user, Action.STOP))


@router.post("/jobs/{job_id}/export")
async def export_job(job_id: JobId, ctx: Ctx, user: CurrentUser) -> JobOut:
    """Merge the LoRA of the job's last checkpoint into the model, in the background (`export_status`)."""
    return job_out(await _act(ctx, job_id, user, Action.EXPORT))


@router.delete("/jobs/{job_id}")
async def delete_job(job_id: JobId, ctx: Ctx, user: CurrentUser) -> Deleted:
    """Forget a job that is not running: a created or queued job leaves the line (one in Slurm's queue is cancelled
    there; the jobs behind it move up and are told their new place), an ended one is forgotten. Its output folder is
    kept. A starting, running or stopping job, or one being exported, is refused with 409: stop it first."""
    await ctx.runtime.jobs.act(job_id, Action.DELETE, user.caller())
    return Deleted(job_id=job_id)


async def _note(ctx: ApiContext, job_id: str, user: Principal, body: NoteBody) -> JobOut:
    return job_out(await ctx.runtime.jobs.note(job_id, body.note, user.caller()))


@router.patch("/jobs/{job_id}")
async def patch_job(job_id: JobId, body: NoteBody, ctx: Ctx, user: CurrentUser) -> JobOut:
    """Change what may be changed of a job: its `note` (free text; \"\" takes it away). Its owner or an admin may
    (403 otherwise); a note with a control character other than line breaks and tabs, or too long, is a 422."""
    return await _note(ctx, job_id, user, body)


@router.post("/jobs/{job_id}/note")
async def note_job(job_id: JobId, body: NoteBody, ctx: Ctx, user: CurrentUser) -> JobOut:
    """The same as `PATCH /training/jobs/{job_id}` with a `note`, for clients that only POST."""
    return await _note(ctx, job_id, user, body)


@router.get("/jobs/{job_id}/status", response_model=JobStatus)
async def get_job_status(job_id: JobId, ctx: Ctx, user: CurrentUser) -> Response:
    """The seed's status: `status`, `progress` in percent, and step, loss, ETA, GPUs, export state."""
    return _json(job_status(await ctx.runtime.store.require(job_id)))


@router.get("/jobs/{job_id}")
async def get_job(job_id: JobId, ctx: Ctx, user: CurrentUser) -> JobDetail:
    """Every detail of a job: the command line, progress, errors and its events."""
    job = await ctx.runtime.store.require(job_id)
    return job_detail(job, await ctx.runtime.store.events(job_id))


MetricNames = Annotated[
    list[str] | None,
    Query(
        alias="name",
        max_length=50,
        description=("only these series (repeat it: `?name=loss&name=eval_loss`); all of them without it"),
    ),
]


@router.get("/jobs/{job_id}/metrics", response_model=MetricsOut)
async def get_job_metrics(job_id: JobId, ctx: Ctx, user: CurrentUser, names: MetricNames = None) -> Response:
    """Every metric the job's runs logged (swift's logging.jsonl), as series by integer step: loss, eval loss,
    learning rate, grad norm, token accuracy, memory, seconds per step, ... A job that has not logged a step yet
    has no series."""
    job = await ctx.runtime.store.require(job_id)
    return _json(metrics_out(job.id, await asyncio.to_thread(READER.of_job, job), names))
