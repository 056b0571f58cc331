"""A job's events in words: one line per kind, for every front end through its `Format` (plain text for the console
and the API's `message`, Slack mrkdwn, HTML for the web page); the API shows an event's kind and fields as they are.

`event_text` matches every kind of `EventFacts` and ends in `assert_never`: a new kind it does not word fails mypy.
Every fact not made by trainbot goes through the front end's `Format`. Events stored before they were typed
(`Told`) are shown with the text they were stored with.
"""

from __future__ import annotations

from typing import Any, assert_never

from bot.mrkdwn import PLAIN, Format
from bot.notice_words import number
from bot.texts import backend_label, gpus_label, who
from storage.events import (
    CheckpointSaved,
    Created,
    EvalDone,
    Event,
    EventFacts,
    Exported,
    ExportFailed,
    ExportFound,
    ExportStarted,
    Failed,
    Finished,
    HandedOver,
    LeftQueue,
    Requeued,
    Restarted,
    Started,
    Stopped,
    StopRequested,
    Submitted,
    Told,
    fields_of,
)


def event_text(facts: EventFacts, fmt: Format = PLAIN) -> str:
    """What happened, in one line (the job it happened to is said around it)."""
    match facts:
        case Created(by=by):
            return f"created by {who(by, fmt)}"
        case Submitted(by=by):
            return f"started by {who(by, fmt)}"
        case HandedOver() as f:
            return f"submitted to {fmt.text(backend_label(f.backend))} as job {fmt.text(f.backend_job_id or '?')}"
        case Started() as f:
            return f"started on {fmt.text(f.host or '?')} ({gpus_label(f.gpus)})"
        case CheckpointSaved() as f:
            return f"checkpoint saved at step {f.step}" + (f": {fmt.code(f.path)}" if f.path else "")
        case EvalDone() as f:
            return f"eval at step {f.step}: eval loss {number(f.metrics.get('eval_loss'))}"
        case Finished(step=step):
            return "finished" + (f" at step {step}" if step is not None else "")
        case StopRequested(by=by):
            return f"stop requested by {who(by, fmt)}"
        case LeftQueue(by=by):
            return f"removed from the queue by {who(by, fmt)}"
        case Stopped() as f:
            return f"stopped by {who(f.by, fmt)}" + (f" at step {f.step}" if f.step is not None else "")
        case Failed() as f if f.failure_class == "launch":
            ran = f" (the command: {fmt.code(f.detail)})" if f.detail else ""
            return f"could not start: {fmt.text(f.summary)}{ran}"
        case Failed() as f:
            return f"failed: {fmt.text(f.summary or f.failure_class or 'see the log')}"
        case Restarted() as f:
            how = f"resuming from {fmt.code(f.resume_from)}" if f.resume_from else "from the start (no checkpoint yet)"
            return f"started again by {who(f.by, fmt)}, {how}"
        case Requeued():
            return "back in line: the bot restarted before this job's launch"
        case ExportStarted() as f if f.again:
            return f"export started again after a restart of the bot: {fmt.code(f.command)}"
        case ExportStarted() as f:
            where = f"GPU {', '.join(f.gpus)}" if f.gpus else "the CPU"
            return f"export started by {who(f.by, fmt)} on {fmt.text(where)}: {fmt.code(f.command)}"
        case ExportFound():
            return "export found again after a restart of the bot"
        case Exported(export_dir=export_dir):
            return f"exported to {fmt.code(export_dir)}"
        case ExportFailed() as f:
            return f"export {'could not start' if f.at_start else 'failed'}: {fmt.text(f.summary)}"
        case Told(topic=topic, text=text):
            return fmt.text(text or topic)
        case _:
            assert_never(facts)


def event_json(event: Event) -> dict[str, Any]:
    """The API's event: its kind and fields as they are, and the same words the console shows."""
    return {"id": event.id or 0, "job_id": event.job_id, "kind": event.kind, "message": event_text(event.facts),
            "data": fields_of(event.facts), "at": event.at}
