"""Notices in words: one line (or a few) per kind, for every front end (the Slack thread adds blocks around them).

`notice_text` matches every kind of `NoticeFacts` and ends in `assert_never`: a new kind it does not word fails
mypy. Every fact not made by trainbot goes through the front end's `Format`.
"""

from __future__ import annotations

from typing import assert_never

from bot.mrkdwn import PLAIN, Format
from bot.texts import backend_label, duration, job_ref, who
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
            return f"🚀 job {jid} started on {fmt.text(f.host)}: {fmt.code(f.command)}"
        case JobRestarted() as f:
            how = f"resuming from {fmt.code(f.resume_from)}" if f.resume_from else "from the start"
            return f"🔁 job {jid} queued again by {who(f.by, fmt)}, {how}"
        case CheckpointSaved() as f:
            return f"💾 job {jid} saved a checkpoint at step {f.step}: {fmt.code(f.path)}"
        case EvalDone() as f:
            return f"📏 job {jid} eval at step {f.step}: eval loss {number(f.eval_loss)}"
        case JobSucceeded() as f:
            return (f"✅ job {jid} succeeded in {duration(f.duration_s)}, final loss {number(f.final_loss)}"
                    f"; last checkpoint {fmt.code(f.last_checkpoint)}")
        case JobFailed() as f:
            tail = "\n".join(f.tail)
            return (f"❌ job {jid} failed: {fmt.text(f.summary)}" + hint_line(f.hint, fmt)
                    + (f"\n{fmt.block(tail)}" if tail else ""))
        case StopRequested(by=by):
            return f"✋ job {jid}: stop requested by {who(by, fmt)}"
        case LeftQueue(by=by):
            return f"⏹️ job {jid} removed from the queue by {who(by, fmt)}"
        case JobStopped() as f:
            ckpt = f"; last checkpoint {fmt.code(f.last_checkpoint)}" if f.last_checkpoint else ""
            return f"⏹️ job {jid} stopped by {who(f.by, fmt)} at step {f.step}{ckpt}"
        case ExportStarted() as f:
            where = f"GPU {', '.join(f.gpus)}" if f.gpus else "the CPU"
            return f"📦 job {jid}: export started by {who(f.by, fmt)} on {where} from {fmt.code(f.checkpoint)}"
        case ExportSucceeded() as f:
            return f"📦 job {jid} exported: merged model in {fmt.code(f.export_dir)}"
        case ExportFailed() as f:
            return f"❌ job {jid}: export failed: {fmt.text(f.summary)}" + hint_line(f.hint, fmt)
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
    notes = "; ".join(fmt.text(n) for n in created.profile_notes)
    return f"{lead}⚙️ profile {fmt.text(created.profile or '?')}: {notes}"


def queued_words(queued: JobQueued, fmt: Format = PLAIN) -> str:
    """Why it waits: a scheduler's job id and its reason, or the place in our line."""
    if queued.backend_job_id:
        words = f"submitted to {backend_label(str(queued.backend))} as job {fmt.text(queued.backend_job_id)}"
        return words + (f"; {fmt.text(queued.pending_reason)}" if queued.pending_reason else "")
    if queued.moved_up:
        return f"moved up: now #{queued.position} in line ({fmt.text(queued.reason)})"
    return f"is waiting (#{queued.position} in line): {fmt.text(queued.reason)}"


def hint_line(hint: str | None, fmt: Format = PLAIN) -> str:
    return f"\n💡 {fmt.text(hint)}" if hint else ""


def number(value: float | None) -> str:
    return "?" if value is None else f"{value:.4g}"
