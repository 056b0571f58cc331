"""A job's events in words: one line per kind, for every front end through its `Format` (plain text for the console
and the API's `message`, Slack mrkdwn, HTML for the web page); the API shows an event's kind and fields as they are.

`event_text` matches every kind of `EventFacts` and ends in `assert_never`: a new kind it does not word fails mypy.
The facts an event carries (a failure, who did it, the profile's notes) are worded by their own renderers
(bot/words/failures.py, actors.py, profiles.py). Every fact not made by trainbot goes through the front
end's `Format`. Events stored before they were typed (`Told`) are shown with the text they were stored with.
"""

from __future__ import annotations

from typing import Any, assert_never

from bot.words import failures as failure_words
from bot.words import tries
from bot.words.actors import by_words
from bot.words.format import PLAIN, Format
from bot.words.notices import number
from bot.words.profiles import notes_words
from bot.words.texts import gpus_label
from bot.words.waiting import backend_label
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
    NoteChanged,
    Requeued,
    Restarted,
    Started,
    Stopped,
    StopRequested,
    Submitted,
    Told,
    TrySessionEnded,
    TrySessionLoaded,
    TrySessionStarted,
    fields_of,
)
from storage.failure_facts import JobFailure, LaunchRefusal


def event_text(facts: EventFacts, fmt: Format = PLAIN) -> str:
    """What happened, in one line (the job it happened to is said around it)."""
    match facts:
        case Created() as f:
            notes = f" (profile: {notes_words(f.profile_notes, fmt)})" if f.profile_notes else ""
            return f"created by {by_words(f.by, fmt)}{notes}"
        case Submitted(by=by):
            return f"started by {by_words(by, fmt)}"
        case HandedOver() as f:
            return f"submitted to {backend_label(f.backend, fmt)} as job {fmt.text(f.backend_job_id or '?')}"
        case Started() as f:
            return f"started on {fmt.text(f.host or '?')} ({gpus_label(f.gpus)})"
        case CheckpointSaved() as f:
            return f"checkpoint saved at step {f.step}" + (f": {fmt.code(f.path)}" if f.path else "")
        case EvalDone() as f:
            return f"eval at step {f.step}: eval loss {number(f.metrics.get('eval_loss'))}"
        case Finished(step=step):
            return "finished" + (f" at step {step}" if step is not None else "")
        case StopRequested(by=by):
            return f"stop requested by {by_words(by, fmt)}"
        case LeftQueue(by=by):
            return f"removed from the queue by {by_words(by, fmt)}"
        case Stopped() as f:
            return f"stopped by {by_words(f.by, fmt)}" + (f" at step {f.step}" if f.step is not None else "")
        case Failed() as f:
            ran = f" (the command: {fmt.code(f.command)})" if f.command else ""
            return f"{_lead(f.failure)}: {failure_words.summary(f.failure, fmt)}{ran}"
        case Restarted() as f:
            how = f"resuming from {fmt.code(f.resume_from)}" if f.resume_from else "from the start (no checkpoint yet)"
            return f"started again by {by_words(f.by, fmt)}, {how}"
        case Requeued():
            return "back in line: the bot restarted before this job's launch"
        case ExportStarted() as f if f.again:
            return f"export started again after a restart of the bot: {fmt.code(f.command)}"
        case ExportStarted() as f:
            where = f"GPU {', '.join(f.gpus)}" if f.gpus else "the CPU"
            return f"export started by {by_words(f.by, fmt)} on {fmt.text(where)}: {fmt.code(f.command)}"
        case ExportFound():
            return "export found again after a restart of the bot"
        case Exported(export_dir=export_dir):
            return f"exported to {fmt.code(export_dir)}"
        case ExportFailed() as f:
            lead = "could not start" if f.at_start or _refused(f.failure) else "failed"
            return f"export {lead}: {failure_words.summary(f.failure, fmt)}"
        case TrySessionStarted(gpus=gpus):
            return f"try: on {tries.where(gpus)}"
        case TrySessionLoaded() as f:
            return f"try: model loaded in {f.load_s:.1f} s ({'warm' if f.warm else 'afresh'})"
        case TrySessionEnded(why=why):
            return "try session ended" + (f": {tries.ENDED[why]}" if why is not None else "")
        case NoteChanged(by=by, removed=removed):
            return f"note {'taken away' if removed else 'changed'} by {by_words(by, fmt)}"
        case Told(topic=topic, text=text):
            return fmt.text(text or topic)
        case _:
            assert_never(facts)


def _refused(failure: JobFailure) -> bool:
    """A launch refused: nothing ran."""
    return isinstance(failure.reason, LaunchRefusal)


def _lead(failure: JobFailure) -> str:
    return "could not start" if _refused(failure) else "failed"


def event_json(event: Event) -> dict[str, Any]:
    """The API's event: its kind and fields as they are, and the same words the console shows."""
    return {
        "id": event.id or 0,
        "job_id": event.job_id,
        "kind": event.kind,
        "message": event_text(event.facts),
        "data": fields_of(event.facts),
        "at": event.at,
    }
