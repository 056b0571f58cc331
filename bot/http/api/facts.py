"""Typed facts over HTTP: a code, the fact's fields by name, and `message`, the same in plain words (made here, in
bot/, by the renderers every front end shares)."""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel, Field

from bot.words import failures as failure_words
from bot.words.texts import by_words
from bot.words.waiting import waiting_words
from storage.actors import Actor
from storage.failure_facts import FailureReason, JobFailure
from storage.waiting import QueueReason


class FactOut(BaseModel):
    code: str = Field(description="what kind of fact, e.g. `cuda_oom`, `gpus_busy`, `slurm_pending`, `user`")
    fields: dict[str, Any] = Field(description="the fact's fields by name (which ones depends on `code`)")
    message: str = Field(description="the same in plain words, for people")


class FailureOut(FactOut):
    hint: str | None = Field(description="what to do about it, in plain words")
    cause: FactOut | None = Field(description="the scheduler's own end of the job, where it ended it")


def fields(fact: Any) -> dict[str, Any]:
    """A fact's fields, its code aside."""
    return {k: v for k, v in dataclasses.asdict(fact).items() if k != "code"}


def _reason_out(reason: FailureReason) -> FactOut:
    return FactOut(code=reason.code, fields=fields(reason), message=failure_words.reason_summary(reason))


def failure_out(failure: JobFailure | None) -> FailureOut | None:
    if failure is None:
        return None
    reason = failure.reason
    return FailureOut(
        code=reason.code,
        fields=fields(reason),
        message=failure_words.summary(failure),
        hint=failure_words.hint(failure),
        cause=_reason_out(failure.cause) if failure.cause else None,
    )


def reason_out(reason: QueueReason | None) -> FactOut | None:
    return None if reason is None else FactOut(code=reason.code, fields=fields(reason), message=waiting_words(reason))


def actor_out(actor: Actor | None) -> FactOut | None:
    return None if actor is None else FactOut(code=actor.code, fields=fields(actor), message=by_words(actor))
