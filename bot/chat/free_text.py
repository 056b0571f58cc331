"""The `/train` commands that end in free text, read as typed before shlex (quotes, `;` and all: never split,
quoted or shell-checked): `try <id> [options] [question]` and `note <id> <text>`."""

from __future__ import annotations

import re

from bot.chat.commands import AddNote, Command, Help, TryJob
from bot.chat.settings import Ctx, Reject, show
from bot.chat.typed import HELP_WORDS, JOB_ID, normalise, read_job_id
from runner.job_request import MAX_GPU_INDEX
from runner.try_types import MAX_TOKENS

TRY = re.compile(r"\s*try(?:\s|$)", re.IGNORECASE)
_TOKEN = re.compile(r"\S+")
_TRY_KEYS = {
    "checkpoint": "checkpoint",
    "ckpt": "checkpoint",
    "step": "checkpoint",
    "gpu": "gpu",
    "gpus": "gpu",
    "gpu_id": "gpu",
    "max_tokens": "max_tokens",
    "tokens": "max_tokens",
}
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "「": "」"}
MAX_CHECKPOINT = 10**9


def try_command(text: str, ctx: Ctx) -> Command:
    """`try <id> [checkpoint=N] [gpu=0|cpu] [max_tokens=N] [question]`: the options first, then the question as
    typed (the rest of the line, free text: it is never split, quoted or shell-checked; the model reads it as it
    is)."""
    rest = text.lstrip()[3:]
    tokens = list(_TOKEN.finditer(rest))
    ctx.words[:] = ["try", *(normalise(t.group()) for t in tokens)]
    if tokens and tokens[0].group().lower() in HELP_WORDS:
        return Help("try")
    if not tokens:
        raise Reject(
            "`try` needs a job id, e.g. `/train try k3x9q` (the recipe's own check) or "
            "`/train try k3x9q Who are you?`; `/train list` shows the jobs.",
            ["list"],
        )
    job_id = read_job_id(normalise(tokens[0].group()))
    options: dict[str, str] = {}
    question_at = None
    for at, token in enumerate(tokens[1:], start=2):
        key, sep, value = normalise(token.group()).partition("=")
        canon = _TRY_KEYS.get(key.lower().lstrip("-").replace("-", "_"))
        if not sep or canon is None:
            question_at = token.start()
            break
        if canon in options:
            raise Reject(f"`{canon}=` is given twice (`{show(token.group())}`): give it once.", ctx.fixed(at, None))
        options[canon] = value.strip().lower()
        if canon == "checkpoint" and not (value.isascii() and value.isdigit() and 0 < int(value) <= MAX_CHECKPOINT):
            raise Reject(
                f"`{show(token.group())}`: `checkpoint=` takes the step of a saved checkpoint, e.g. "
                "`checkpoint=50` (`/train show <id>` tells the last one).",
                ctx.fixed(at, None),
            )
        if canon == "max_tokens" and not (value.isascii() and value.isdigit() and 0 < int(value) <= MAX_TOKENS):
            raise Reject(
                f"`{show(token.group())}`: `max_tokens=` takes 1 to {MAX_TOKENS}, e.g. `max_tokens=512`.",
                ctx.fixed(at, None),
            )
        if canon == "gpu" and not (
            options[canon] == "cpu"
            or (options[canon].isascii() and options[canon].isdigit() and int(options[canon]) <= MAX_GPU_INDEX)
        ):
            raise Reject(
                f"`{show(token.group())}`: a try runs on one GPU (`gpu=0`) or on the CPU (`gpu=cpu`).",
                ctx.fixed(at, "gpu=cpu"),
            )
    question = unquote(rest[question_at:].strip()) if question_at is not None else None
    checkpoint = int(options["checkpoint"]) if "checkpoint" in options else None
    gpus = (options["gpu"],) if "gpu" in options else None
    max_tokens = int(options["max_tokens"]) if "max_tokens" in options else None
    return TryJob(job_id, question or None, checkpoint, gpus, max_tokens)


def unquote(question: str) -> str:
    """A question typed between quotes is the text inside them."""
    if len(question) >= 2 and _QUOTES.get(question[0]) == question[-1]:
        return question[1:-1].strip()
    return question


def note_command(text: str) -> AddNote | Help:
    """`note <id> <text>`: the text is the rest of the line, as typed (a note may say `don't; lr too high`)."""
    _, job_id, note = [*text.split(maxsplit=2), "", ""][:3]
    if job_id.lower() in HELP_WORDS:
        return Help("note")
    shown = job_id.strip("`<>").lower()
    if not JOB_ID.fullmatch(shown):
        raise Reject(
            f"`{show(job_id or '(nothing)')}` is not a job id: `note` takes a job id and the note, e.g. "
            "`/train note k3x9q lr 1e-4 was too high`.",
            ["help", "note"],
        )
    if not note.strip():
        raise Reject(
            f"`note {shown}` needs the note's text after the id, e.g. `/train note {shown} lr 1e-4 was too high`.",
            ["help", "note"],
        )
    return AddNote(shown, note.strip())
