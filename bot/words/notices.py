"""Notices in words: one line (or a few) per kind, for every front end (the Slack thread adds blocks around them).

`notice_text` matches every kind of `NoticeFacts` and ends in `assert_never`: a new kind it does not word fails
mypy. Every fact not made by trainbot goes through the front end's `Format`.
"""

from __future__ import annotations

from typing import assert_never

from bot.words import failures as failure_words
from bot.words.format import PLAIN, Format
from bot.words.profiles import notes_words
from bot.words.texts import backend_label, by_words, duration, job_ref, who
from bot.words.waiting import waiting_words
from storage.notices import (
    CheckpointSaved,
    EvalDone,
    ExportFailed,
    ExportStarted,
    ExportSucceeded,
    JobCreated,
    JobDeleted,
    JobFailed,
    JobQueued,
    JobRestarted,
    JobStarted,
    JobStopped,
    JobSubmitted,
    JobSucceeded,
    LeftQueue,
    NotApplied,
    Notice,
    StopRequested,
    Unreadable,
)


def notice_text(notice: Notice, fmt: Format = PLAIN, name: str | None = None) -> str:
    """What happened to the job, in words; `name`: the job's (a deleted job's notice carries its own)."""
    if isinstance(notice.facts, JobDeleted) and notice.facts.name:
        name = notice.facts.name
    jid = job_ref(notice.job_id, name, fmt)
    match notice.facts:
        case JobCreated() as f:
            return f"🆕 job {jid} created: {fmt.code(f.command)}" + profile_words(f, fmt, "\n")
        case JobSubmitted(by=by):
            return f"▶️ job {jid} started by {who(by, fmt)}"
        case JobQueued() as f:
            return f"⏳ job {jid} " + queued_words(f, fmt)
        case JobStarted() as f:
            where = f" on {fmt.text(f.host)}" if f.host else ""
            return f"🚀 job {jid} started{where}: {fmt.code(f.command)}"
        case JobRestarted() as f:
            how = f"resuming from {fmt.code(f.resume_from)}" if f.resume_from else "from the start"
            return f"🔁 job {jid} queued again by {who(f.by, fmt)}, {how}"
        case CheckpointSaved() as f:
            return f"💾 job {jid} saved a checkpoint{_at_step(f.step)}" + (f": {fmt.code(f.path)}" if f.path else "")
        case EvalDone() as f:
            return f"📏 job {jid} eval{_at_step(f.step)}: eval loss {number(f.eval_loss)}"
        case JobSucceeded() as f:
            ckpt = f"; last checkpoint {fmt.code(f.last_checkpoint)}" if f.last_checkpoint else ""
            return (
                f"✅ job {jid} succeeded in {duration(f.duration_s)}, final loss {number(f.final_loss)}{ckpt}"
                + not_applied_lines(f.not_applied, fmt)
            )
        case JobFailed() as f:
            tail = "\n".join(f.tail)
            return (
                f"❌ job {jid} failed: {failure_words.summary(f.failure, fmt)}"
                + hint_line(failure_words.hint(f.failure, fmt))
                + (f"\n{fmt.block(tail)}" if tail else "")
                + not_applied_lines(f.not_applied, fmt)
            )
        case StopRequested(by=by):
            return f"✋ job {jid}: stop requested by {who(by, fmt)}"
        case LeftQueue(by=by):
            return f"⏹️ job {jid} removed from the queue by {who(by, fmt)}"
        case JobStopped() as f:
            ckpt = f"; last checkpoint {fmt.code(f.last_checkpoint)}" if f.last_checkpoint else ""
            return f"⏹️ job {jid} stopped by {by_words(f.by, fmt)}{_at_step(f.step)}{ckpt}" + not_applied_lines(
                f.not_applied, fmt
            )
        case ExportStarted() as f:
            where = f"GPU {', '.join(f.gpus)}" if f.gpus else "the CPU"
            source = f" from {fmt.code(f.checkpoint)}" if f.checkpoint else ""
            return f"📦 job {jid}: export started by {who(f.by, fmt)} on {where}{source}"
        case ExportSucceeded() as f:
            return f"📦 job {jid} exported: merged model in {fmt.code(f.export_dir)}" + not_applied_lines(
                f.not_applied, fmt
            )
        case ExportFailed() as f:
            return (
                f"❌ job {jid}: export failed: {failure_words.summary(f.failure, fmt)}"
                + hint_line(failure_words.hint(f.failure, fmt))
                + not_applied_lines(f.not_applied, fmt)
            )
        case JobDeleted(by=by):
            return f"🗑️ job {jid} deleted by {who(by, fmt)}"
        case Unreadable(topic=topic):
            return f"job {jid}: {fmt.text(topic)}"
        case _:
            assert_never(notice.facts)


def profile_words(created: JobCreated, fmt: Format = PLAIN, lead: str = "") -> str:
    """What the speed profile changed in the job's command ("" when it changed nothing)."""
    if not created.profile_notes:
        return ""
    profile = fmt.text(created.profile) if created.profile else "fast"
    return f"{lead}⚙️ profile {profile}: {notes_words(created.profile_notes, fmt)}"


# The speed levers of runner/swift_levers.py, by their codes
LEVER_WORDS = {
    "no_cudnn_attention": "attention without cuDNN's kernel",
    "padding_free_sdpa": "padding-free micro-batches (it ran padded ones)",
    "token_micro_batches": "micro-batches by tokens (it ran the planned layout, with its checkpointing)",
    "shards_together": "its shards written together (they were written one after the other)",
}


def not_applied_lines(levers: tuple[NotApplied, ...], fmt: Format = PLAIN) -> str:
    """A line for each speed lever the run went without, and why (what its swift or transformers lacked)."""
    lines = []
    for lever in levers:
        why = f": {fmt.text(lever.detail)}" if lever.detail else ""
        if lever.lever == "warm_start":
            lines.append(f"\n⚠️ started afresh, not in the process kept warm{why}")
        else:
            lines.append(f"\n⚠️ ran without {LEVER_WORDS.get(lever.lever, fmt.code(lever.lever))}{why}")
    return "".join(lines)


def queued_words(queued: JobQueued, fmt: Format = PLAIN) -> str:
    """Why it waits: a scheduler's job id and its reason, or the place in our line."""
    if queued.backend_job_id:
        words = f"submitted to {backend_label(str(queued.backend), fmt)} as job {fmt.text(queued.backend_job_id)}"
        return words + (f"; {waiting_words(queued.pending_reason, fmt)}" if queued.pending_reason else "")
    why = waiting_words(queued.reason, fmt) if queued.reason else ""
    if queued.moved_up:
        return f"moved up: now #{queued.position} in line" + (f" ({why})" if why else "")
    place = f" (#{queued.position} in line)" if queued.position else ""
    return f"is waiting{place}" + (f": {why}" if why else "")


def hint_line(hint: str | None) -> str:
    """A hint already in the front end's words (its facts written through its `Format`)."""
    return f"\n💡 {hint}" if hint else ""


def _at_step(step: int | None) -> str:
    return "" if step is None else f" at step {step}"


def number(value: float | None) -> str:
    return "?" if value is None else f"{value:.4g}"
