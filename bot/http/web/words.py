"""Typed facts as HTML for the templates: every fact is escaped by the HTML `Format` (bot/words/format.py), so the words
are marked safe once, here."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

from bot.words import failures as failure_words
from bot.words.events import event_text
from bot.words.format import HTML
from bot.words.profiles import notes_words
from bot.words.texts import by_words
from bot.words.waiting import waiting_words
from storage.models import Event, Job
from storage.profile_notes import ProfileNote


def failure_html(job: Job) -> Markup:
    """Why the job failed (its summary), or nothing."""
    return Markup(failure_words.summary(job.failure, HTML) if job.failure else "")


def hint_html(job: Job) -> Markup:
    hint = failure_words.hint(job.failure, HTML) if job.failure else None
    return Markup(hint or "")


def waiting_html(job: Job) -> Markup:
    return Markup(waiting_words(job.queue_reason, HTML) if job.queue_reason else "")


def stopped_by_html(job: Job) -> Markup:
    return Markup(by_words(job.stopped_by, HTML) if job.stopped_by else "")


def notes_html(notes: Sequence[ProfileNote]) -> Markup:
    return Markup(notes_words(notes, HTML))


def event_html(event: Event) -> Markup:
    return Markup(event_text(event, HTML))


GLOBALS = {
    "event_html": event_html,
    "failure_html": failure_html,
    "hint_html": hint_html,
    "waiting_html": waiting_html,
    "stopped_by_html": stopped_by_html,
    "notes_html": notes_html,
}
