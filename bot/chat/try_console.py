"""A try's answer in the console: printed as it is generated, each answer under its heading, timings after."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import TextIO

from bot.words import refusals, tries
from runner.try_types import TryAnswer, TryAsking, TryDone, TryEvent, TryLoaded, TryLoading, TryToken, TryWaiting
from storage.errors import JobError


async def print_answer(stream: AsyncGenerator[TryEvent, None], out: TextIO) -> TryDone | None:
    """Read the stream to its end, printing it; the TryDone (None: it failed, and that was printed)."""
    done = None
    try:
        async with contextlib.aclosing(stream):
            async for event in stream:
                done = _show(event, out) or done
    except JobError as exc:
        _line(out, f"\n⚠️ {refusals.error_text(exc)}")
    return done


def _show(event: TryEvent, out: TextIO) -> TryDone | None:
    match event:
        case TryWaiting():
            _line(out, tries.waiting_text(event))
        case TryLoading():
            _line(out, tries.loading_text(event))
        case TryLoaded():
            _line(out, tries.loaded_text(event))
        case TryAsking(side=side, question=question):
            _line(out, tries.answer_heading(side, tries.inert(question)))
        case TryToken(text=text):
            out.write(tries.inert(text))
            out.flush()
        case TryAnswer():
            _line(out, ("\n" if event.text else "") + tries.answer_line(event))
        case TryDone():
            _line(out, tries.done_text(event))
            return event
    return None


def _line(out: TextIO, text: str) -> None:
    out.write(text.rstrip("\n") + "\n")
    out.flush()
