"""The message that shows a try's answer in Slack, as it is generated: its blocks, and each event applied to it.

The model's text is untrusted: it is shown only in `plain_text` objects (no mention, no link, no mrkdwn), cut at a
limit (the whole answer goes to the thread as a file, `whole_answer`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.words import texts, tries
from bot.words.format import SLACK
from runner.try_types import (
    TryAnswer,
    TryAsking,
    TryDone,
    TryEvent,
    TryLoaded,
    TryLoading,
    TryToken,
    TryWaiting,
)

ANSWER_LIMIT = 2800  # characters of an answer shown in its message (a plain_text section takes 3000)
FIELD_LIMIT = 900  # of each answer of the check, side by side (a field takes 2000; two questions, two models)
HEADER_LIMIT = 150  # Slack's header block


@dataclass
class AnswerView:
    """What the answer's message shows now."""

    job_id: str
    asker: str
    question: str | None  # None: the recipe's check
    status: str = "⏳ starting…"
    texts: dict[tuple[int, str], str] = field(default_factory=dict)  # (question index, side) -> text so far
    questions: dict[int, str] = field(default_factory=dict)
    footer: str | None = None
    turn: int = 1  # the how-manieth question of the thread's conversation
    name: str = ""  # the job's, shown beside its id

    def cut(self) -> bool:
        limit = FIELD_LIMIT if self.question is None else ANSWER_LIMIT
        return any(len(t) > limit for t in self.texts.values())


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text or "…", "emoji": False}


def _shown(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " … (cut here: the whole answer is in the file)"


def blocks(view: AnswerView) -> list[dict[str, Any]]:
    """The message: trainbot's words in mrkdwn, the question and the answers in plain_text."""
    turn = f" (turn {view.turn} of the conversation)" if view.turn > 1 else ""
    ref = texts.job_ref(view.job_id, view.name, SLACK)
    head = f"🤖 {SLACK.mention(view.asker)} asked job {ref}'s model{turn} · {view.status}"
    out: list[dict[str, Any]] = [{"type": "context", "elements": [{"type": "mrkdwn", "text": head}]}]
    if view.question is not None:
        out.append({"type": "section", "text": _plain("› " + view.question)})
        out.append({"type": "section", "text": _plain(_shown(view.texts.get((0, "tuned"), ""), ANSWER_LIMIT))})
    else:
        for index, question in sorted(view.questions.items()):
            out.append({"type": "header", "text": _plain(question[:HEADER_LIMIT])})
            out.append(
                {
                    "type": "section",
                    "fields": [
                        _plain(f"{tries.SIDE[side]}:\n" + _shown(view.texts.get((index, side), ""), FIELD_LIMIT))
                        for side in ("tuned", "base")
                    ],
                }
            )
    if view.footer:
        out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": view.footer}]})
    return out


def whole_answer(view: AnswerView) -> str:
    """The file beside a cut answer: every answer in full."""
    if view.question is not None:
        return f"Q: {view.question}\n\n{view.texts.get((0, 'tuned'), '')}\n"
    parts = []
    for index, question in sorted(view.questions.items()):
        for side in ("tuned", "base"):
            parts.append(f"Q: {question}\n[{tries.SIDE[side]}]\n{view.texts.get((index, side), '')}\n")
    return "\n".join(parts)


def apply(view: AnswerView, event: TryEvent) -> bool:
    """The event into the view; True when what the message shows changed."""
    match event:
        case TryWaiting():
            view.status = tries.waiting_text(event, SLACK)
        case TryLoading():
            view.status = "⏳ " + tries.loading_text(event, SLACK)
        case TryLoaded():
            view.status = f"✍️ answering ({tries.loaded_text(event)})"
        case TryAsking(index=index, question=question):
            view.questions[index] = question
        case TryToken(index=index, side=side, text=text):
            view.texts[(index, side)] = view.texts.get((index, side), "") + text
        case TryAnswer(index=index, side=side, text=text):
            view.texts[(index, side)] = text
        case TryDone(answers=answers):
            view.status = "✅ answered"
            line = f"{tries.answer_line(answers[0])} " if len(answers) == 1 else ""
            view.footer = line + tries.done_text(event, SLACK)
    return True


def plain_ref(job_id: str, name: str) -> str:
    """The job's id and name where no formatting shows (a notification, a file's title)."""
    return SLACK.text(job_id) + (f" “{SLACK.text(name)}”" if name else "")
