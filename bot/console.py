"""The terminal front end: `/train` commands without the slash, one per line, and what a channel would be told.

Each console reads the outbox as its own reader (`console-…`, storage/outbox.py), from the moment it opens: it shows
every notice, also those of jobs asked for in Slack, and takes none from Slack or from another console. It shows the
same story a channel is told (created, started, checkpoints, the end), plus a live progress line for running jobs.
Closing it leaves the outbox; one killed stops holding notices back KEEP_S after it was last seen.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from pathlib import Path
from typing import TextIO

from bot.chat.handlers import Handlers, Image, Reply
from bot.chat.try_console import print_answer
from bot.words import notices as notice_words
from bot.words import texts
from runner.access import Caller
from runner.config import Config
from runner.runtime import Runtime
from runner.try_types import TryDone
from storage.models import JobState

PROGRESS_EVERY_S = 1.0
KEEP_S = 600.0  # a console not seen this long (killed) holds no notice back
ALIVE_EVERY_S = 60.0


class Console:
    def __init__(self, runtime: Runtime, out: TextIO) -> None:
        self.runtime = runtime
        self.handlers = Handlers(runtime)
        self.out = out
        self.caller = Caller(console=True)
        self._shown_progress: dict[str, tuple[str, float]] = {}
        self._tty = out.isatty()
        self.last_answer: TryDone | None = None  # the last `try`'s (None: none, or it failed)
        self.reader = f"console-{secrets.token_hex(4)}"
        self._alive_at = 0.0
        self._flushing = asyncio.Lock()  # the watcher and a command both flush: each notice is shown once

    async def open(self) -> None:
        """Read the outbox from now on (before the runtime starts: what its recovery tells is shown)."""
        await self._alive()

    async def leave(self) -> None:
        await self.runtime.store.leave(self.reader)

    async def _alive(self) -> None:
        await self.runtime.store.register_reader(self.reader, keep_s=KEEP_S)
        self._alive_at = time.monotonic()

    def say(self, text: str) -> None:
        if self._tty:
            self.out.write("\r\033[K")
        self.out.write(text.rstrip("\n") + "\n")
        self.out.flush()

    async def command(self, line: str) -> Reply:
        line = line.strip()
        if line.startswith("/train"):
            line = line[len("/train") :].strip()
        reply = await self.handlers.handle(line, self.caller)
        self.say(reply.text if reply.ok else f"⚠️ {reply.text}")
        if reply.file is not None:
            self.say(reply.file.read_text(errors="replace"))
        if reply.answer is not None:  # `try`: the answer as it is generated
            self.last_answer = await print_answer(reply.answer, self.out)
        if reply.image is not None:
            self.say(f"The chart: {self.save(reply.image)}")
        await self.flush_notices()
        return reply

    def save(self, image: Image) -> Path:
        """A reply's picture, as a file in the data folder's charts/ (a terminal shows no pictures)."""
        folder = self.runtime.config.data_dir / "charts"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / image.filename
        path.write_bytes(image.png)
        return path

    async def flush_notices(self) -> None:
        store = self.runtime.store
        if time.monotonic() - self._alive_at >= ALIVE_EVERY_S:
            await self._alive()
        async with self._flushing:
            while notices := await store.pending_notices(self.reader, limit=100):
                for notice in notices:
                    job = await store.get(notice.job_id)
                    self.say(notice_words.notice_text(notice, name=job.name if job else None))
                await store.mark_delivered(self.reader, *(n.id for n in notices if n.id is not None))
        for job in await store.active():
            if job.state is not JobState.RUNNING or job.progress.step is None:
                continue
            line = f"   ⋯ {texts.job_ref(job.id, job.name)} {texts.progress_line(job)}"
            shown, at = self._shown_progress.get(job.id, ("", 0.0))
            if line != shown and time.monotonic() - at >= PROGRESS_EVERY_S:
                self._shown_progress[job.id] = (line, time.monotonic())
                if self._tty:
                    self.out.write("\r\033[K" + line)
                    self.out.flush()
                else:
                    self.say(line)

    async def idle(self) -> bool:
        """No job running or waiting, no export under way, nothing left to tell."""
        store = self.runtime.store
        return (
            not await store.active()
            and not await store.exporting()
            and not await store.pending_notices(self.reader, limit=1)
        )

    async def watch(self, until_idle: bool, interval: float = 0.5) -> None:
        while True:
            await self.flush_notices()
            if until_idle and await self.idle():
                return
            await asyncio.sleep(interval)


async def run_console(config: Config, stdin: TextIO, out: TextIO, *, wait: bool) -> int:
    runtime = await Runtime.open(config)
    console = Console(runtime, out)
    watcher: asyncio.Task[None] | None = None
    interactive = stdin.isatty()
    try:
        await console.open()
        await runtime.start()
        watcher = asyncio.create_task(console.watch(until_idle=False))
        while True:
            if interactive:
                out.write("train> ")
                out.flush()
            line = await asyncio.to_thread(stdin.readline)
            if not line:
                break
            if line.strip() and not line.lstrip().startswith("#"):
                await console.command(line)
        if wait:
            watcher.cancel()
            await console.watch(until_idle=True)
    finally:
        if watcher is not None:
            watcher.cancel()
        await console.flush_notices()
        await console.leave()
        await runtime.close()
    return 0


def main(config: Config, *, wait: bool) -> int:
    return asyncio.run(run_console(config, sys.stdin, sys.stdout, wait=wait))
