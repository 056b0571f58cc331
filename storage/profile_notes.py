"""What the speed profile changed in a job's command (runner/profiles.py, runner/planner.py): typed notes, kept in
the `job_created` notice and worded by each front end (bot/words/profiles.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from storage.facts import FactCodec


@dataclass(frozen=True)
class BatchSplit:
    """`samples` a step, as micro-batches of `micro` with `steps` accumulation steps, on each of `gpus` GPUs."""

    micro: int
    steps: int
    gpus: int = 1
    samples: int = 16
    code: Literal["batch_split"] = "batch_split"


@dataclass(frozen=True)
class CheckpointingOff:
    """Gradient checkpointing off: `free_gib` free on `gpus` covers the worst case, `need_gib` at `max_length`."""

    free_gib: float
    gpus: tuple[str, ...]
    need_gib: float
    max_length: int
    code: Literal["checkpointing_off"] = "checkpointing_off"


@dataclass(frozen=True)
class LigerKernels:
    code: Literal["liger_kernels"] = "liger_kernels"


@dataclass(frozen=True)
class PaddingFree:
    code: Literal["padding_free"] = "padding_free"


@dataclass(frozen=True)
class MicroBatchTokens:
    """Each step's samples in micro-batches of whole samples of at most `budget` tokens, without gradient
    checkpointing: `free_gib` free on `gpus` covers any such micro-batch."""

    budget: int
    free_gib: float
    gpus: tuple[str, ...]
    code: Literal["micro_batch_tokens"] = "micro_batch_tokens"


@dataclass(frozen=True)
class NoCudnnAttention:
    code: Literal["no_cudnn_attention"] = "no_cudnn_attention"


@dataclass(frozen=True)
class DirectStart:
    """Started without swift's wrapper: one process, or one a GPU (`ranks`, under torch.distributed.run)."""

    ranks: bool = False
    code: Literal["direct_start"] = "direct_start"


@dataclass(frozen=True)
class WarmStart:
    """Started in a process that imported swift before the job came, when one is ready."""

    code: Literal["warm_start"] = "warm_start"


@dataclass(frozen=True)
class LegacyNote:
    """A note stored as words before the types: shown as it is."""

    text: str
    code: Literal["legacy"] = "legacy"


ProfileNote = (
    BatchSplit
    | CheckpointingOff
    | LigerKernels
    | PaddingFree
    | MicroBatchTokens
    | NoCudnnAttention
    | DirectStart
    | WarmStart
    | LegacyNote
)

CODEC: FactCodec[ProfileNote] = FactCodec(ProfileNote)


def event_data(notes: tuple[ProfileNote, ...]) -> dict[str, Any]:
    """A `created` event's data that keeps what the profile changed (the job's page shows it once the notice that
    told it has left the outbox)."""
    return {"profile_notes": [CODEC.to_python(n) for n in notes]} if notes else {}


def from_event_data(data: dict[str, Any]) -> list[ProfileNote]:
    """The notes back; a note kept as words (before the types) is a LegacyNote, shown as it is."""
    return [CODEC.from_python(n) or LegacyNote(str(n)) for n in data.get("profile_notes") or ()]
