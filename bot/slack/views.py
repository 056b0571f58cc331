"""Block Kit for the channel: the job card and the thread's notices. Pure functions from jobs to messages.

Every fact not made by trainbot is written through `SLACK` (bot/words/format.py): no typed text or log line can ping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, assert_never

from bot.words import failures as failure_words
from bot.words import notices as notice_words
from bot.words import texts
from bot.words.format import SLACK
from bot.words.waiting import waiting_words
from runner.actions import Action, allowed_actions
from storage.actors import Outside
from storage.models import ExportState, Job, JobState
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
    NoticeFacts,
    StopRequested,
    Unreadable,
)

Block = dict[str, Any]

STOP_ACTION, EXPORT_ACTION = "stop_job", "export_job"
SECTION_MAX = 3000  # characters of text in one section block
MAX_BLOCKS = 50


@dataclass(frozen=True)
class Message:
    text: str  # notifications and clients without blocks show this
    blocks: list[Block] = field(default_factory=list)
    broadcast: bool = False  # a thread reply also shown in the channel


def mrkdwn(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text)}}


def context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text)}]}


def clip(text: str, limit: int = SECTION_MAX) -> str:
    """Cut to `limit` characters, keeping a code block closed."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 6].rstrip() + "…"
    return cut + "\n```" if cut.count("```") % 2 else cut


def plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:75], "emoji": True}


# ---- the job card ------------------------------------------------------------------------------------------


def job_card(job: Job) -> Message:
    named = f" “{SLACK.text(job.name)}”" if job.name else ""
    head = f"{texts.STATE_ICONS[job.state]} *{job.kind.upper()} job {SLACK.code(job.id)}*{named} is *{job.state}*"
    fields = [
        ("GPUs", texts.gpus_label(job.gpus)),
        ("Started by", texts.who(job.user_id, SLACK)),
        ("Output", SLACK.code(job.output_dir)),
        ("State", _state_detail(job)),
    ]
    blocks: list[Block] = [
        mrkdwn(head),
        {"type": "section", "fields": [{"type": "mrkdwn", "text": clip(f"*{k}*\n{v}", 2000)} for k, v in fields]},
    ]
    if progress := _progress(job):
        blocks.append(mrkdwn(progress))
    if notes := _notes(job):
        blocks.append(context(notes))
    if buttons := _buttons(job):
        blocks.append({"type": "actions", "block_id": f"job_{job.id}", "elements": buttons})
    summary = f"{job.kind.upper()} job {SLACK.text(job.id)}{named} is {job.state}"
    if job.progress.step is not None:
        summary += f" (step {job.progress.step}/{job.progress.max_steps or '?'})"
    return Message(summary, blocks)


def _state_detail(job: Job) -> str:
    if job.state is JobState.QUEUED:
        return "queued"
    if job.started_at and job.state.is_active:
        return f"{job.state} for {texts.duration((job.updated_at or job.started_at) - job.started_at)}"
    if job.started_at and job.finished_at:
        return f"{job.state} after {texts.duration(job.finished_at - job.started_at)}"
    return str(job.state)


def _progress(job: Job) -> str:
    if job.state.is_active:
        return texts.progress_line(job, SLACK)
    p = job.progress
    if p.step is None:
        return ""
    parts = [f"[{texts.progress_bar(p.percent)}] step {p.step}/{p.max_steps or '?'}"]
    loss = p.train_loss if p.train_loss is not None else p.loss
    if loss is not None:
        parts.append(f"final loss {loss:.4g}")
    if p.eval_loss is not None:
        parts.append(f"eval loss {p.eval_loss:.4g}")
    return " · ".join(parts)


def _notes(job: Job) -> str:
    notes = []
    if job.state is JobState.QUEUED and job.queue_reason:
        notes.append(f"⏳ {waiting_words(job.queue_reason, SLACK)}")
    if job.state is JobState.FAILED:
        hint = failure_words.hint(job.failure, SLACK) if job.failure else None
        why = failure_words.summary(job.failure, SLACK) if job.failure else "failed"
        notes.append(f"❌ {why}" + (f" · 💡 {hint}" if hint else ""))
    if job.state in (JobState.STOPPING, JobState.STOPPED) and job.stopped_by:
        verb = "stopped" if isinstance(job.stopped_by, Outside) else "stop requested"
        notes.append(f"✋ {verb} by {texts.by_words(job.stopped_by, SLACK)}")
    if job.progress.last_checkpoint and not job.state.is_active:
        notes.append(f"💾 last checkpoint {SLACK.code(job.progress.last_checkpoint)}")
    if job.export_state is not ExportState.NONE:
        notes.append(f"📦 export {job.export_state}" + (f" → {SLACK.code(job.export_dir)}" if job.export_dir else ""))
    if job.note:
        notes.append(f"📝 {SLACK.text(job.note)}")
    return "\n".join(notes)


def _buttons(job: Job) -> list[Block]:
    buttons: list[Block] = []
    allowed = allowed_actions(job)  # the card is the channel's: each press is checked for the one who pressed
    if Action.STOP in allowed:
        buttons.append(
            {
                "type": "button",
                "action_id": STOP_ACTION,
                "value": job.id,
                "style": "danger",
                "text": plain("Stop"),
                "confirm": {
                    "title": plain("Stop this job?"),
                    "style": "danger",
                    "confirm": plain("Stop it"),
                    "deny": plain("Keep it running"),
                    "text": {
                        "type": "mrkdwn",
                        "text": f"Job {SLACK.code(job.id)} stops after saving what it can "
                        "(a checkpoint it has written stays usable).",
                    },
                },
            }
        )
    if Action.EXPORT in allowed:
        label = "Export again" if job.export_state is ExportState.EXPORTED else "Export"
        buttons.append(
            {"type": "button", "action_id": EXPORT_ACTION, "value": job.id, "style": "primary", "text": plain(label)}
        )
    return buttons


def deleted_card(job_id: str, by: str | None, name: str | None = None) -> Message:
    ref = texts.job_ref(job_id, name, SLACK)
    text = f"🗑️ Job {ref} was deleted by {texts.who(by, SLACK)} (its files stay on disk)."
    return Message(f"Job {SLACK.text(job_id)}{f' “{SLACK.text(name)}”' if name else ''} was deleted", [mrkdwn(text)])


# ---- notices in the thread ---------------------------------------------------------------------------------


class Role(Enum):
    """What a notice does in Slack."""

    CARD = "card"  # posts the job card (its thread is the job's)
    GONE = "gone"  # marks the card deleted
    END = "end"  # a reply broadcast to the channel, with the loss curve
    BROADCAST = "broadcast"  # a reply broadcast to the channel
    MINOR = "minor"  # a reply that may share one message with the milestones queued after it
    REPLY = "reply"


def role(facts: NoticeFacts) -> Role:
    match facts:
        case JobCreated():
            return Role.CARD
        case JobDeleted():
            return Role.GONE
        case JobSucceeded() | JobStopped() | JobFailed():
            return Role.END
        case ExportStarted() | ExportSucceeded() | ExportFailed():
            return Role.BROADCAST
        case JobQueued() | JobStarted() | JobRestarted() | CheckpointSaved() | EvalDone() | StopRequested():
            return Role.MINOR
        case JobSubmitted() | LeftQueue() | Unreadable():
            return Role.REPLY
        case _:
            assert_never(facts)


def notice_message(notice: Notice, job: Job | None) -> Message:
    """A milestone as a thread reply; ends and exports are broadcast to the channel too."""
    broadcast = role(notice.facts) in (Role.END, Role.BROADCAST)
    name = job.name if job is not None else None
    ref = texts.job_ref(notice.job_id, name, SLACK)
    plain_ref = SLACK.text(notice.job_id) + (f" “{SLACK.text(name)}”" if name else "")
    match notice.facts:
        case JobStarted() as f:
            head = f"🚀 Job {ref} started on {SLACK.text(f.host or '?')} ({texts.gpus_label(f.gpus)}) with:"
            blocks = [mrkdwn(head), mrkdwn(SLACK.block(clip(f.command, SECTION_MAX - 40)))]
            return Message(f"Job {plain_ref} started", blocks)
        case JobFailed() as f:
            why = failure_words.summary(f.failure, SLACK)
            lines = [f"❌ Job {ref} failed: {why or 'see the log'}"]
            if hint := failure_words.hint(f.failure, SLACK):
                lines.append(f"💡 {hint}")
            if without := notice_words.not_applied_lines(f.not_applied, SLACK):
                lines.append(without.lstrip("\n"))
            blocks = [mrkdwn("\n".join(lines))]
            if tail := "\n".join(f.tail):
                blocks.append(mrkdwn(_tail_block(tail)))
            summary = f"Job {plain_ref} failed: {why}"
            return Message(summary, blocks, broadcast)
        case (
            JobCreated()
            | JobSubmitted()
            | JobQueued()
            | JobRestarted()
            | CheckpointSaved()
            | EvalDone()
            | StopRequested()
            | LeftQueue()
            | JobSucceeded()
            | JobStopped()
            | ExportStarted()
            | ExportSucceeded()
            | ExportFailed()
            | JobDeleted()
            | Unreadable()
        ):
            text = notice_words.notice_text(notice, SLACK, name)
            return Message(_first_line(text), [mrkdwn(text)], broadcast)
        case _:
            assert_never(notice.facts)


def profile_message(notice: Notice) -> Message | None:
    """The card's first reply: what the speed profile changed in the command (None when it changed nothing)."""
    if not isinstance(notice.facts, JobCreated):
        return None
    words = notice_words.profile_words(notice.facts, SLACK)
    return Message(f"Job {SLACK.text(notice.job_id)}: {words}", [mrkdwn(words)]) if words else None


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def _tail_block(tail: str) -> str:
    """The end of a log tail as a code block that fits one section (escaping makes it longer)."""
    keep = len(tail)
    while len(block := SLACK.block(_last_chars(tail, keep))) > SECTION_MAX:
        keep -= len(block) - SECTION_MAX
    return block


def _last_chars(text: str, limit: int) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def notices_message(notices: Sequence[Notice], job: Job | None) -> Message:
    """Several minor milestones of one job in one reply, in order (what waited while the channel was busy)."""
    if len(notices) == 1:
        return notice_message(notices[0], job)
    parts = [notice_message(n, job) for n in notices]
    blocks = [b for part in parts for b in part.blocks][:MAX_BLOCKS]
    return Message("\n".join(part.text for part in parts), blocks)


def notice_metadata(notices: Sequence[Notice]) -> dict[str, Any]:
    """Slack message metadata naming the notices a message tells, so a retry can see it was already posted."""
    first = notices[0]
    return {
        "event_type": "trainbot_notice",
        "event_payload": {
            "notice_id": first.id,
            "job_id": first.job_id,
            "topic": first.topic,
            "notice_ids": [n.id for n in notices],
            "topics": [n.topic for n in notices],
        },
    }


def told_notices(message: dict[str, Any], job_id: str) -> list[int]:
    """The ids of the notices of job `job_id` that a message of ours tells ([] for any other message)."""
    payload = (message.get("metadata") or {}).get("event_payload") or {}
    if message.get("metadata", {}).get("event_type") != "trainbot_notice" or payload.get("job_id") != job_id:
        return []
    ids = payload.get("notice_ids") or [payload.get("notice_id")]
    return [int(i) for i in ids if isinstance(i, int)]


def chart_filename(notice: Notice) -> str:
    return f"loss-{notice.job_id}-{notice.id}.png"


def reply_text(text: str, ok: bool) -> str:
    """An answer to the asker (ephemeral)."""
    return text if ok else f"⚠️ {text}"
