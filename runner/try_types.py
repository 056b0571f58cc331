"""What a try of a job's model is asked and what it answers: typed values, no words (each front end words them).

A try (`/train try`, the API's chat, the page's box) asks the job's model something through runner/trying.py; the
answer comes as a stream of these events, ending with `TryDone`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from storage.events import TryEnd as TryEnd  # why a session ended: a fact its try_ended event keeps
from storage.waiting import SlurmPending

Role = Literal["system", "user", "assistant"]
Side = Literal["tuned", "base"]  # the fine-tuned model, or the base model it was trained from
WeightsKind = Literal["export", "checkpoint"]

MAX_QUESTION_CHARS = 2000  # one message
MAX_CONVERSATION_CHARS = 24000  # all messages of a conversation together
MAX_MESSAGES = 64
MAX_TOKENS = 2048  # the most a request may ask to generate
DEFAULT_MAX_TOKENS = 256
CHECK_MAX_TOKENS = 64  # an identity answer is one sentence


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class TryAsk:
    """A try of job `job_id`: `messages` (the last one the user's), or none for the recipe's own check (its
    questions asked of the fine-tuned and of the base model). `checkpoint`: a step (`checkpoint-N`) instead of the
    export or the last checkpoint; `gpus`: where (default: the job's first GPU, or the CPU for a CPU job)."""

    job_id: str
    messages: tuple[Message, ...] = ()
    checkpoint: int | None = None
    gpus: tuple[str, ...] | None = None
    max_tokens: int | None = None  # None: DEFAULT_MAX_TOKENS (CHECK_MAX_TOKENS for the check)
    temperature: float | None = None  # None: the model's own generation config (0, greedy, for the check)


@dataclass(frozen=True)
class Weights:
    """What answers: the job's export (a merged model), or a checkpoint's LoRA adapters on the base model."""

    kind: WeightsKind
    path: str
    step: int | None = None  # the checkpoint's (for an export: the checkpoint it merged)
    base_model: str | None = None  # the base model, from the checkpoint's args.json


@dataclass(frozen=True)
class TryWaiting:
    """Waiting in the queue's line for the GPU: `position` 1 = next; `held` GPU -> the job holding it (its
    training, export or try), `foreign` GPUs busy with processes trainbot did not start. On Slurm: waiting in
    Slurm's queue as its batch job `slurm_job`, for Slurm's reason (`slurm`)."""

    position: int
    gpus: tuple[str, ...]
    held: Mapping[str, str] = field(default_factory=dict)
    foreign: tuple[str, ...] = ()
    slurm: SlurmPending | None = None
    slurm_job: str | None = None


@dataclass(frozen=True)
class TryLoading:
    """The model is being loaded (`warm`: in the process kept with swift imported; `slurm_job`: in this Slurm
    batch job, on as many GPUs as `gpus` names, which ones Slurm's choice)."""

    weights: Weights
    gpus: tuple[str, ...]
    warm: bool
    slurm_job: str | None = None


@dataclass(frozen=True)
class TryLoaded:
    load_s: float  # from the process's start (or its hand-over, warm) to the model ready: imports and load
    warm: bool
    each_turn: bool = False  # loaded for this try only (a Slurm batch job): no session is kept for the next


@dataclass(frozen=True)
class TryAsking:
    """A question goes to the model now (its tokens follow): `index` which one, `side` asked of which model."""

    index: int
    side: Side
    question: str


@dataclass(frozen=True)
class TryToken:
    """A piece of an answer, as it is generated. `index`: which question (the check asks several)."""

    index: int
    side: Side
    text: str


@dataclass(frozen=True)
class TryAnswer:
    """One whole answer: timings from the question reaching the loaded model (`first_token_s`: to its first
    token; None when it said nothing)."""

    index: int
    side: Side
    question: str
    text: str
    completion_tokens: int | None
    prompt_tokens: int | None
    finish_reason: str | None
    first_token_s: float | None
    total_s: float


@dataclass(frozen=True)
class TryDone:
    """The try's end. Timings from the try being asked: `waited_s` in line, `load_s` loading (None: the model was
    loaded already), `first_token_s` to the first token, `total_s` to the last answer's end."""

    job_id: str
    weights: Weights
    gpus: tuple[str, ...]
    answers: tuple[TryAnswer, ...]
    check: bool  # the recipe's own check (each question asked of both sides)
    waited_s: float
    load_s: float | None
    warm: bool | None  # None: the model was loaded already
    first_token_s: float | None
    total_s: float
    slurm_job: str | None = None  # the Slurm batch job that answered


TryEvent: TypeAlias = TryWaiting | TryLoading | TryLoaded | TryAsking | TryToken | TryAnswer | TryDone
