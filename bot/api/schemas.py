"""Every request and response body, with the seed's field names: the OpenAPI page (/docs) is the contract."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bot.event_words import event_json
from runner.command import SwiftCommand
from runner.gpus import Gpu
from storage.models import Event, Job

GpuId = str | int  # the seed sends "0"; "0,1", "cpu" and a bare 0 work too


class LLMJobCreate(BaseModel):
    """The seed's `LLMTrainingJobCreateRequest`: only the GPUs and the output folder; the recipe is fixed."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"gpu_id": "0",
                                                                               "output_dir": "output/llm_test"}]})
    gpu_id: GpuId = Field(description='GPU number(s): "0", "0,1", or "cpu"')
    output_dir: str = Field(max_length=1000, description="a folder inside the output root")
    profile: str | None = Field(None, max_length=20, description='"fast" (default) or "exact"')
    start: bool = Field(False, description="create and start in one call (the seed creates, then starts)")


class VLMJobCreate(LLMJobCreate):
    """A VLM job: the VLM recipe with the overrides it allows."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"gpu_id": "0",
                                                                               "output_dir": "output/vl",
                                                                               "num_train_epochs": 2}]})
    model: str | None = Field(None, max_length=1000)
    dataset: str | list[str] | None = None
    num_train_epochs: float | None = None
    learning_rate: float | None = None
    lora_rank: int | None = None
    lora_alpha: int | None = None
    max_length: int | None = None
    batch_size: int | None = None
    max_pixels: int | None = None


class JobOut(BaseModel):
    job_id: str
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
    error: str | None


class JobStatus(BaseModel):
    job_id: str
    status: str
    progress: float
    step: int | None
    max_steps: int | None
    loss: float | None
    eval_loss: float | None
    eta_seconds: float | None
    gpus: list[str]
    export_status: str
    queue_reason: str | None
    error: str | None
    error_hint: str | None


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
    overrides: dict[str, str]
    run_dir: str | None
    log_path: str | None
    last_checkpoint: str | None
    train_loss: float | None
    events: list[EventOut]


class JobList(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page. Opaque "
                                                "(where this page ended, not a job): it keeps working when jobs are "
                                                "deleted between pages")


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


class ErrorBody(BaseModel):
    """What was wrong, and (for bad input) a request body that would work."""

    error: str
    example: dict[str, Any] | None = None


def job_out(job: Job) -> JobOut:
    return JobOut(job_id=job.id, training_type=str(job.kind), status=str(job.state), gpu_id=",".join(job.gpus),
                  output_dir=job.output_dir, progress=job.progress.percent or 0.0, user_id=job.user_id,
                  created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
                  export_status=str(job.export_state), export_dir=job.export_dir, error=job.error_message)


def job_status(job: Job) -> JobStatus:
    p = job.progress
    return JobStatus(job_id=job.id, status=str(job.state), progress=p.percent or 0.0, step=p.step,
                     max_steps=p.max_steps, loss=p.loss, eval_loss=p.eval_loss, eta_seconds=p.remaining_s,
                     gpus=list(job.gpus), export_status=str(job.export_state), queue_reason=job.queue_reason,
                     error=job.error_message, error_hint=job.error_hint)


def event_out(event: Event) -> EventOut:
    return EventOut(**event_json(event))


def job_detail(job: Job, events: list[Event]) -> JobDetail:
    p = job.progress
    return JobDetail(**job_out(job).model_dump(), command=SwiftCommand(job.argv, job.env).display(),
                     overrides=job.overrides, run_dir=job.run_dir, log_path=job.train_run.log_path,
                     last_checkpoint=p.last_checkpoint, train_loss=p.train_loss,
                     events=[event_out(e) for e in events])


def gpu_out(gpu: Gpu, held_by: str | None, busy_foreign: bool) -> GpuOut:
    return GpuOut(index=gpu.index, name=gpu.name, memory_used_mib=gpu.memory_used_mib,
                  memory_total_mib=gpu.memory_total_mib, utilization_pct=gpu.utilization_pct, held_by=held_by,
                  busy_foreign=busy_foreign)
