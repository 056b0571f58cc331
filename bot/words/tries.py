"""How a try of a job's model reads as text (console and Slack): where it waits, what it loads, the answers'
headings and timings, and the refusals (runner/try_errors.py). The model's answers themselves are untrusted text:
the front end shows them through its `Format` (Slack: escaped), never as mrkdwn or HTML of their own.
"""

from __future__ import annotations

from bot.words.format import PLAIN, Format
from bot.words.waiting import slurm_pending_words
from runner.try_errors import (
    BadConversation,
    CheckpointNotFound,
    NoCheckQuestions,
    NothingToTry,
    TooLong,
    TryExportRunning,
    TryFailed,
    TryRefused,
    TryUnavailable,
)
from runner.try_types import TryAnswer, TryDone, TryEnd, TryLoaded, TryLoading, TryWaiting, Weights
from storage.models import JobState

SIDE = {"tuned": "fine-tuned", "base": "base model"}


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def where(gpus: tuple[str, ...], slurm_job: str | None = None) -> str:
    """Where a try runs: on Slurm `gpus` says how many (Slurm picks which), as a training's `gpu=` does there."""
    if gpus == ("cpu",):
        return "the CPU"
    if slurm_job is not None:
        return "1 GPU" if len(gpus) == 1 else f"{len(gpus)} GPUs"
    return f"GPU {','.join(gpus)}"


def weights_text(weights: Weights, fmt: Format = PLAIN) -> str:
    if weights.kind == "export":
        return f"the export {fmt.code(weights.path)}"
    return f"checkpoint {weights.step if weights.step is not None else '?'} ({fmt.code(weights.path)})"


def waiting_text(event: TryWaiting, fmt: Format = PLAIN) -> str:
    if event.slurm is not None:
        job = fmt.code(event.slurm_job) if event.slurm_job else ""
        return f"⏳ in Slurm's queue as Slurm job {job}: {slurm_pending_words(event.slurm, fmt)}"
    busy = [f"{where((g,))} is held by job {fmt.code(job)}" for g, job in event.held.items()]
    busy += [f"{where((g,))} is busy with a process trainbot did not start" for g in event.foreign]
    why = "; ".join(busy) or "an earlier job is waiting for the same GPU"
    return f"⏳ waiting for {where(event.gpus)}, {ordinal(event.position)} in line ({why})"


def loading_text(event: TryLoading, fmt: Format = PLAIN) -> str:
    how = ", in the process kept warm" if event.warm else ""
    if event.slurm_job is not None:
        how = f", in Slurm job {fmt.code(event.slurm_job)}"
    return f"loading {weights_text(event.weights, fmt)} on {where(event.gpus, event.slurm_job)}{how}…"


def loaded_text(event: TryLoaded) -> str:
    if event.each_turn:
        return f"loaded in {event.load_s:.1f} s (on Slurm each try is a batch job that loads the model afresh)"
    return f"loaded in {event.load_s:.1f} s" + (" (warm)" if event.warm else "")


def answer_heading(side: str, question: str, fmt: Format = PLAIN) -> str:
    """Above an answer: which model answers which question."""
    return f"{fmt.bold(SIDE.get(side, side))} · {fmt.text(question)}"


def answer_line(answer: TryAnswer) -> str:
    tokens = f"{answer.completion_tokens} tokens" if answer.completion_tokens is not None else "? tokens"
    first = f"first token {answer.first_token_s:.2f} s · " if answer.first_token_s is not None else ""
    cut = " · cut at the token limit" if answer.finish_reason == "length" else ""
    return f"({tokens} · {first}{answer.total_s:.2f} s{cut})"


def done_text(done: TryDone, fmt: Format = PLAIN) -> str:
    parts = [f"{weights_text(done.weights, fmt)} on {where(done.gpus, done.slurm_job)}"]
    if done.slurm_job is not None:
        parts[0] += f" in Slurm job {fmt.code(done.slurm_job)}"
    if done.waited_s >= 0.5:
        queue = "in Slurm's queue" if done.slurm_job is not None else "for the GPU"
        parts.append(f"waited {done.waited_s:.1f} s {queue}")
    if done.load_s is not None:
        parts.append(f"loaded in {done.load_s:.1f} s" + (" (warm)" if done.warm else ""))
    if done.first_token_s is not None:
        parts.append(f"first token after {done.first_token_s:.1f} s")
    parts.append(f"done in {done.total_s:.1f} s")
    return "↳ " + " · ".join(parts)


def refusal_text(exc: TryRefused, fmt: Format = PLAIN) -> str:
    """The words for a try's refusal."""
    c = fmt.code
    match exc:
        case NothingToTry(job_id=job_id, state=state) if state in (JobState.CREATED, JobState.QUEUED):
            return f"job {c(job_id)} has not started yet ({state}): there is no checkpoint to try yet"
        case NothingToTry(job_id=job_id, state=state, step=step) if state in (
            JobState.STARTING,
            JobState.RUNNING,
            JobState.STOPPING,
        ):
            at = f" (at step {step})" if step is not None else ""
            return (
                f"job {c(job_id)} is {state}{at} and has saved no checkpoint yet: try it once it has "
                "(its thread says when)"
            )
        case NothingToTry(job_id=job_id, state=state):
            return f"job {c(job_id)} {state} without saving a checkpoint: there is no model of it to try"
        case CheckpointNotFound(job_id=job_id, step=step, have=have) if have:
            return (
                f"job {c(job_id)} has no checkpoint {step}; it has "
                + ", ".join(str(s) for s in have)
                + f" (e.g. {c(f'checkpoint={have[-1]}')})"
            )
        case CheckpointNotFound(job_id=job_id, step=step):
            return f"job {c(job_id)} has no checkpoint {step}, nor any other on disk"
        case TryExportRunning(job_id=job_id, have=have):
            named = f", or name a checkpoint ({c(f'checkpoint={have[-1]}')})" if have else ""
            return f"job {c(job_id)} is being exported: try it once the export has ended{named}"
        case TooLong(what="question", length=length, limit=limit):
            return f"the question is {length} characters long; a question has at most {limit}"
        case TooLong(what="conversation", length=length, limit=limit):
            return f"the conversation is {length} characters long; at most {limit} are taken"
        case TooLong(what="messages", length=length, limit=limit):
            return f"the conversation has {length} messages; at most {limit} are taken"
        case TooLong(what="max_tokens", length=length, limit=limit):
            return f"max_tokens is {length}; it may be 1 to {limit}"
        case BadConversation(reason="empty"):
            return "there is no question to answer"
        case BadConversation(role=role):
            return f"the last message must be the user's question, not the {fmt.text(role)}'s"
        case NoCheckQuestions(job_id=job_id, kind=kind):
            return (
                f"the {kind.upper()} recipe has no questions of its own to check: ask one, e.g. "
                f"{c(f'try {job_id} What is in the picture?')}"
            )
        case TryUnavailable(detail=detail):
            return (
                f"tries need swift's python, and {fmt.text(detail)} does not name one: set "
                f"{c('[swift] bin')} to the swift of a virtualenv"
            )
        case TryFailed(log_path=log_path, tail=tail):
            ends = f"; its log ends:\n{fmt.block(tail)}" if tail else ""
            return f"the model could not answer: {failure_summary(exc, fmt)} (the log: {c(log_path)}){ends}"
    return fmt.text(exc)


def failure_summary(exc: TryFailed, fmt: Format = PLAIN) -> str:
    """What went wrong with the session's process; its own words (untrusted) through `fmt`."""
    match exc.cause:
        case "child_error":
            return fmt.text(exc.detail)
        case "ended":
            status = f" (exit status {exc.returncode})" if exc.returncode is not None else ""
            if exc.slurm_state is not None:
                return f"its Slurm batch job ended {fmt.text(exc.slurm_state)}{status} before answering"
            return f"the session's process ended{status}"
        case "line_too_long":
            return f"the session's process wrote a line too long to read: {fmt.text(exc.detail)}"
        case "not_json":
            return f"the session's process wrote {fmt.text(exc.detail)}, not a JSON line"
        case "warm_ended":
            return "the warm process had ended"
        case "slurm_refused":
            return f"Slurm refused its batch job: {fmt.text(exc.detail)}"
        case "cannot_start":
            return f"cannot start {fmt.code(exc.detail)}: {fmt.text(exc.strerror or 'unknown error')}"


ENDED: dict[TryEnd, str] = {
    "bot_restarted": "the bot restarted",
    "bot_stopped": "the bot stopped",
    "job_deleted": "the job was deleted",
    "process_ended": "its process ended",
    "replaced": "another checkpoint or GPU was asked for",
    "load_failed": "the model did not load",
    "abandoned": "the try was abandoned while the model loaded",
    "idle": "idle",
    "gpu_wanted": "its GPU is wanted",
    "answered": "its Slurm batch job answered and ended",
}


_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0))}


def inert(text: str) -> str:
    """The model's text with control characters shown as escapes (a terminal would obey ESC sequences); new lines
    and tabs stay."""
    return text.translate(_CONTROLS)
