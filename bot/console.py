"""The terminal front end: `/train` commands without the slash, one per line, and what a channel would be told.

Notices are drained from the outbox exactly like the Slack notifier does, so the console shows the same story
(created, started, checkpoints, the end) plus a live progress line for running jobs.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

from bot import notice_words, texts
from bot.handlers import Handlers, Reply
from runner.access import Caller
from runner.config import Config
from runner.runtime import Runtime
from storage.models import JobState

PROGRESS_EVERY_S = 1.0


class Console:
    def __init__(self, runtime: Runtime, out: TextIO) -> None:
        self.runtime = runtime
        self.handlers = Handlers(runtime)
        self.out = out
        self.caller = Caller(console=True)
        self._shown_progress: dict[str, tuple[str, float]] = {}
        self._tty = out.isatty()

    def say(self, text: str) -> None:
        if self._tty:
            self.out.write("\r\033[K")
        self.out.write(text.rstrip("\n") + "\n")
        self.out.flush()

    async def command(self, line: str) -> Reply:
        line = line.strip()
        if line.startswith("/train"):
            line = line[len("/train"):].strip()
        reply = await self.handlers.handle(line, self.caller)
        self.say(reply.text if reply.ok else f"⚠️ {reply.text}")
        if reply.file is not None:
            self.say(reply.file.read_text(errors="replace"))
        await self.flush_notices()
        return reply

    async def flush_notices(self) -> None:
        store = self.runtime.store
        while notices := await store.due_notices(limit=100):
            for notice in notices:
                job = await store.get(notice.job_id)
                self.say(notice_words.notice_text(notice, name=job.name if job else None))
                assert notice.id is not None
                await store.mark_delivered(notice.id)
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
        return not await store.active() and not await store.exporting() and not await store.pending_notices()

    async def watch(self, until_idle: bool, interval: float = 0.5) -> None:
        while True:
            await self.flush_notices()
            if until_idle and await self.idle():
                return
            await asyncio.sleep(interval)


async def run_console(config: Config, stdin: TextIO, out: TextIO, *, wait: bool) -> int:
    runtime = await Runtime.open(config)
    await runtime.start()
    console = Console(runtime, out)
    watcher = asyncio.create_task(console.watch(until_idle=False))
    interactive = stdin.isatty()
    try:
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
        watcher.cancel()
        await console.flush_notices()
        await runtime.close()
    return 0


def main(config: Config, *, wait: bool) -> int:
    return asyncio.run(run_console(config, sys.stdin, sys.stdout, wait=wait))
