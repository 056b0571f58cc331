"""A job's event in words. Events are still sentences made in the runner (issue 27 makes them typed facts with the
lifecycle module); those that tell a failure or who stopped a job carry it as a fact in their data, worded here."""

from __future__ import annotations

from bot.words import failures as failure_words
from bot.words import tries
from bot.words.actors import by_words
from bot.words.format import PLAIN, Format
from storage import actors, failure_facts
from storage.models import Event


def event_text(event: Event, fmt: Format = PLAIN) -> str:
    if (failure := failure_facts.from_event_data(event.data)) is not None:
        launch = isinstance(failure.reason, failure_facts.LaunchRefusal)
        lead = "could not start" if launch else "failed"
        lead = f"export {'could not start' if launch else 'failed'}" if event.kind == "export_failed" else lead
        command = event.data.get("command")
        ran = f" (the command: {fmt.code(command)})" if command else ""
        return f"{lead}: {failure_words.summary(failure, fmt)}{ran}"
    if event.kind == "stopped" and (by := actors.from_event_data(event.data)) is not None:
        return f"stopped by {by_words(by, fmt)}"
    if (tried := tries.event_text(event)) is not None:
        return tried
    return fmt.text(event.message)
