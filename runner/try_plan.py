"""What a try will ask, and where: the job's weights, the GPU (or the CPU), and the turns to answer, checked before
anything waits or loads (the refusals are runner/try_errors.py's)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runner import leases, try_weights
from runner.gpus import GpuProbe
from runner.recipes import CHECK_QUESTIONS
from runner.try_errors import BadConversation, NoCheckQuestions, TooLong
from runner.try_types import (
    CHECK_MAX_TOKENS,
    DEFAULT_MAX_TOKENS,
    MAX_CONVERSATION_CHARS,
    MAX_MESSAGES,
    MAX_QUESTION_CHARS,
    MAX_TOKENS,
    Message,
    Side,
    TryAsk,
    Weights,
)
from storage.models import Job

CPU = leases.CPU


@dataclass(frozen=True)
class Turn:
    """One answer to get: `messages` asked of `side`."""

    index: int
    side: Side
    question: str
    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float | None

    def request(self) -> dict[str, Any]:
        return {
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "side": self.side,
        }


@dataclass(frozen=True)
class Plan:
    job: Job
    weights: Weights
    gpus: tuple[str, ...]
    turns: tuple[Turn, ...]
    check: bool


def plan(job: Job, ask: TryAsk, gpus: tuple[str, ...]) -> Plan:
    """The try `ask` of `job` on `gpus` (`pick_gpus`): a conversation's last question, or the recipe's own check
    (each check question of the fine-tuned model and of its base model)."""
    weights = try_weights.resolve(job, ask.checkpoint)
    if ask.max_tokens is not None and not 1 <= ask.max_tokens <= MAX_TOKENS:
        raise TooLong("max_tokens", ask.max_tokens, MAX_TOKENS)
    if ask.messages:
        check_conversation(ask.messages)
        question = ask.messages[-1].content
        turn = Turn(0, "tuned", question, ask.messages, ask.max_tokens or DEFAULT_MAX_TOKENS, ask.temperature)
        return Plan(job, weights, gpus, (turn,), check=False)
    questions = CHECK_QUESTIONS.get(job.kind, ())
    if not questions:
        raise NoCheckQuestions(job.id, str(job.kind))
    temperature = 0.0 if ask.temperature is None else ask.temperature
    turns = tuple(
        Turn(i, side, q, (Message("user", q),), ask.max_tokens or CHECK_MAX_TOKENS, temperature)
        for i, q in enumerate(questions)
        for side in ("tuned", "base")
    )
    return Plan(job, weights, gpus, turns, check=True)


def pick_gpus(job: Job, asked: tuple[str, ...] | None, *, scheduled: bool, probe: GpuProbe) -> tuple[str, ...]:
    """The one GPU a try runs on: the one asked for, else the job's first, else the CPU. On a scheduling backend
    (Slurm) it names how many, as a training's `gpu=` does there: one, which one is Slurm's choice."""
    gpus = asked if asked is not None else (job.gpus[:1] if job.gpus and job.gpus != CPU else CPU)
    gpus = CPU if "cpu" in gpus else gpus[:1]
    if gpus == CPU or scheduled:
        return gpus
    if (missing := probe.describe_missing(gpus)) is not None:
        raise missing
    return gpus


def check_conversation(messages: Sequence[Message]) -> None:
    if not messages:
        raise BadConversation("empty")
    if len(messages) > MAX_MESSAGES:
        raise TooLong("messages", len(messages), MAX_MESSAGES)
    if messages[-1].role != "user":
        raise BadConversation("last_not_user", messages[-1].role)
    for message in messages:
        if message.role != "assistant" and len(message.content) > MAX_QUESTION_CHARS:
            raise TooLong("question", len(message.content), MAX_QUESTION_CHARS)
    total = sum(len(m.content) for m in messages)
    if total > MAX_CONVERSATION_CHARS:
        raise TooLong("conversation", total, MAX_CONVERSATION_CHARS)
