"""Every response body, with the seed's field names: the OpenAPI page (/docs) is the contract. The request bodies
are bot/http/api/bodies.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from bot.http.api.facts import FactOut, FailureOut, actor_out, failure_out, reason_out
from bot.words.events import event_json
from runner.command import SwiftCommand
from runner.gpus import Gpu
from runner.metrics import Metrics
from storage.models import Event, Job


class JobOut(BaseModel):
    job_id: str
    name: str = Field(description="what people call it: the name it was given, else its output folder's last part")
    note: str = Field(description='free text its owner or an admin added ("": none)')
    training_type: str
    status: str
    gpu_id: str
    output_dir: str
    progress: float = Field(description="percent of the training steps done")
    user_id: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    export_status: str
    export_dir: str | None
    error: FailureOut | None = Field(description="why it failed or could not start: a code, its fields, words")
    duration_s: float | None = Field(description="from start to end (so far, while it runs); null: never started")
    gpu_hours: float | None = Field(description="its duration times its GPUs (a CPU job: 0)")
    final_loss: float | None = Field(description="the last train loss swift logged")
    final_eval_loss: float | None = Field(description="the last eval loss swift logged")
    overrides: dict[str, str] = Field(description="the VLM recipe's settings it changed")


class JobStatus(BaseModel):
    job_id: str
    name: str
    status: str
    progress: float
    step: int | None
    max_steps: int | None
    loss: float | None
    eval_loss: float | None
    eta_seconds: float | None
    gpus: list[str]
    export_status: str
    queue_reason: FactOut | None = Field(description="why a queued job waits: a code, its fields, words")
    error: FailureOut | None
    stopped_by: FactOut | None = Field(
        description="who stopped it: `user` (with its `id`), `console`, `system` "
        "or `outside` (an interrupt from outside trainbot)"
    )


class EventOut(BaseModel):
    """An event as a fact: its `kind` and its fields (`data`); `message` says it in words, as the console does.
    An event stored before events were typed has kind `told`-less fields: `data` {"topic", "text"}."""

    id: int
    job_id: str
    kind: str
    message: str
    data: dict[str, Any]
    at: float


class JobDetail(JobOut):
    command: str
    run_dir: str | None
    log_path: str | None
    last_checkpoint: str | None
    train_loss: float | None
    events: list[EventOut]


class MetricsOut(BaseModel):
    """A job's logged metrics, each a series of `[step, value]` points in step order."""

    job_id: str
    max_steps: int | None = Field(description="the run's last step, as swift last said")
    run_dirs: list[str] = Field(description="the run folders read (a resumed job has one a run), oldest first")
    series: dict[str, list[tuple[int, float]]] = Field(
        description=(
            "name -> `[step, value]` points: `loss`, `eval_loss`, `learning_rate`, `grad_norm`, `token_acc`, "
            "`eval_token_acc`, `memory_gib` (on a GPU), `seconds_per_step`, `epoch`, `elapsed_s`, `tokens_per_s` "
            "(where swift counts tokens), and any other number swift logs, under its own key. A resumed job's "
            "later run replaces the earlier one's points from its checkpoint's step on"
        )
    )


class JobList(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null on the last page. Opaque "
        "(where this page ended, not a job): it keeps working when jobs are "
        "deleted between pages"
    )


class Deleted(BaseModel):
    job_id: str
    deleted: bool = True


class LogTail(BaseModel):
    job_id: str
    log_path: str | None
    lines: list[str]


class GpuOut(BaseModel):
    index: str
    name: str
    memory_used_mib: float | None
    memory_total_mib: float | None
    utilization_pct: float | None
    held_by: str | None = Field(description="the job holding it, if any")
    busy_foreign: bool = Field(description="runs a process trainbot did not start (no job starts on it)")


class GpuList(BaseModel):
    gpus: list[GpuOut]
    source: str


class Health(BaseModel):
    ok: bool
    jobs_active: int


class FieldError(BaseModel):
    """One field that was wrong: its name as sent, the rule it broke, and what would do."""

    field: str = Field(description="the body's field (or query parameter, or header) as sent, e.g. `output_dir`")
    rule: str = Field(
        description="the rule it broke: pydantic's error type (`int_type`, `less_than_equal`, "
        "`missing`, ...) or trainbot's (`outside_root`, `not_a_gpu`, `whole_number`, ...)"
    )
    message: str
    value: Any = Field(None, description="the value sent (cut at 200 characters)")
    limit: float | None = Field(None, description="the bound it broke, where there is one")
    allowed: list[str] | None = Field(None, description="the values that would do, where they are few")
    roots: list[str] | None = Field(None, description="the folders a path must lie in (`[paths]`)")
    resolved: str | None = Field(None, description="where a path really leads (symbolic links followed)")


class ErrorBody(BaseModel):
    """What was wrong, in words and as fields; for bad input a request body that would work, and the call to make."""

    error: str = Field(description="what was wrong, in words")
    code: str = Field(
        description="`invalid_request`, `idempotency_key_reused`, `not_found`, `forbidden`, "
        "`unauthorized`, `conflict`, `output_in_use`, `too_large`, ..."
    )
    fields: list[FieldError] = Field(default_factory=list)
    example: dict[str, Any] | None = Field(None, description="a request body that would work (bad input only)")
    endpoint: str | None = Field(
        None,
        description="the call to make next, e.g. `POST /training/llm/jobs` with "
        "`example`, or `POST /training/jobs/k3x9q/stop`",
    )


def job_out(job: Job) -> JobOut:
    p = job.progress
    return JobOut(
        job_id=job.id,
        name=job.name,
        note=job.note,
        training_type=str(job.kind),
        status=str(job.state),
        gpu_id=",".join(job.gpus),
        output_dir=job.output_dir,
        progress=p.percent or 0.0,
        user_id=job.user_id,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        export_status=str(job.export_state),
        export_dir=job.export_dir,
        error=failure_out(job.failure),
        duration_s=job.duration_s,
        gpu_hours=job.gpu_hours,
        final_loss=p.loss,
        final_eval_loss=p.eval_loss,
        overrides=job.overrides,
    )


def job_status(job: Job) -> JobStatus:
    p = job.progress
    return JobStatus(
        job_id=job.id,
        name=job.name,
        status=str(job.state),
        progress=p.percent or 0.0,
        step=p.step,
        max_steps=p.max_steps,
        loss=p.loss,
        eval_loss=p.eval_loss,
        eta_seconds=p.remaining_s,
        gpus=list(job.gpus),
        export_status=str(job.export_state),
        queue_reason=reason_out(job.queue_reason),
        error=failure_out(job.failure),
        stopped_by=actor_out(job.stopped_by),
    )


def event_out(event: Event) -> EventOut:
    return EventOut(**event_json(event))


def job_detail(job: Job, events: list[Event]) -> JobDetail:
    p = job.progress
    return JobDetail(
        **job_out(job).model_dump(),
        command=SwiftCommand(job.argv, job.env).display(),
        run_dir=job.run_dir,
        log_path=job.train_run.log_path,
        last_checkpoint=p.last_checkpoint,
        train_loss=p.train_loss,
        events=[event_out(e) for e in events],
    )


def metrics_out(job_id: str, metrics: Metrics, names: Sequence[str] | None = None) -> MetricsOut:
    series = {k: [(s, v) for s, v in points] for k, points in metrics.series.items() if not names or k in names}
    return MetricsOut(
        job_id=job_id, max_steps=metrics.max_steps, run_dirs=[str(d) for d in metrics.run_dirs], series=series
    )


def gpu_out(gpu: Gpu, held_by: str | None, busy_foreign: bool) -> GpuOut:
    return GpuOut(
        index=gpu.index,
        name=gpu.name,
        memory_used_mib=gpu.memory_used_mib,
        memory_total_mib=gpu.memory_total_mib,
        utilization_pct=gpu.utilization_pct,
        held_by=held_by,
        busy_foreign=busy_foreign,
    )
