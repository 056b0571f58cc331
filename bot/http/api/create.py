"""A create request's JSON body mapped to the runner's JobRequest field by field: no chat words in between, so a
JSON string is a value byte for byte (runner/job_request.py judges it, as it does for Slack and the web form).
And a body that would work, for a refusal."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bot.chat.commands import out_example
from bot.http.api.bodies import LLMJobCreate, VLMJobCreate
from runner.config import Config
from runner.job_request import JobRequest, check_request
from storage.errors import JobError
from storage.models import Kind

BODY_FIELDS = {"gpus": "gpu_id", "epochs": "num_train_epochs"}  # a request's field -> the body's, where they differ
OVERRIDES = {
    "model": "model",
    "dataset": "dataset",
    "num_train_epochs": "epochs",
    "learning_rate": "learning_rate",
    "lora_rank": "lora_rank",
    "lora_alpha": "lora_alpha",
    "max_length": "max_length",
    "batch_size": "batch_size",
    "max_pixels": "max_pixels",
}  # a VLM body's field -> the override's key


def body_field(field: str) -> str:
    """The body's name for a request's field (or override key)."""
    return BODY_FIELDS.get(field, field)


def schema(kind: Kind) -> type[LLMJobCreate]:
    return VLMJobCreate if kind is Kind.VLM else LLMJobCreate


def endpoint(kind: Kind) -> str:
    return "POST /training/jobs" if kind is Kind.VLM else "POST /training/llm/jobs"


def to_request(kind: Kind, body: LLMJobCreate, user_id: str | None, channel_id: str | None) -> JobRequest:
    gpus = tuple(body.gpu_id.split(",")) if isinstance(body.gpu_id, str) else (str(body.gpu_id),)
    overrides = {}
    if isinstance(body, VLMJobCreate):
        for name, key in OVERRIDES.items():
            value = getattr(body, name)
            if value is not None:
                overrides[key] = _text(value)
    return JobRequest(
        kind,
        gpus,
        Path(body.output_dir),
        overrides,
        user_id,
        channel_id,
        body.profile or "fast",
        hold=not body.start,
        name=body.name,
    )


def _text(value: str | int | float | list[str]) -> str:
    """A value as the request holds it: a number's own text (the check gives it its canonical form), a list
    comma-separated (its items hold no comma: the schema says so)."""
    if isinstance(value, list):
        return ",".join(value)
    return repr(value) if isinstance(value, float) else str(value)


def example_body(
    kind: Kind, config: Config, sent: object = None, bad: Collection[str] = (), gpus: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A body that would work: what was sent with the `bad` fields (the body's names) left out or given good
    values, if that passes the check; else a stock one. `gpus`: GPUs that would do, where those are known."""
    stock: dict[str, Any] = {
        "gpu_id": ",".join(gpus) or "0",
        "output_dir": out_example(config.output_root, config.base_dir),
    }
    model = schema(kind)
    kept = {k: v for k, v in sent.items() if k in model.model_fields and k not in bad} if isinstance(sent, dict) else {}
    for candidate in (stock | kept, stock):
        try:
            check_request(to_request(kind, model.model_validate(candidate), None, None), config)
        except (ValidationError, JobError):
            continue
        return candidate
    return stock
