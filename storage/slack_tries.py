"""The Slack front end's try conversations: which job a thread talks to, and what was said there, so a bot that
restarts goes on with a thread's conversation instead of starting afresh. Written and read only by
bot/slack/try_thread.py, like the cards (storage/slack_cards.py)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from storage.connection import Connection

KEEP_DAYS = 30  # a thread not talked in for this long is forgotten (its next reply starts afresh)


@dataclass(frozen=True)
class SlackTryThread:
    channel: str
    thread_ts: str
    job_id: str
    messages: tuple[tuple[str, str], ...] = ()  # (role, content), oldest first


class SlackTryThreads(Connection):
    async def slack_try_thread(self, channel: str, thread_ts: str) -> SlackTryThread | None:
        rows = await self._read(
            "SELECT job_id, messages FROM slack_try_threads WHERE channel = ? AND thread_ts = ?", (channel, thread_ts)
        )
        if not rows:
            return None
        said = tuple((str(role), str(content)) for role, content in json.loads(rows[0][1]))
        return SlackTryThread(channel, thread_ts, rows[0][0], said)

    async def save_slack_try_thread(self, thread: SlackTryThread) -> None:
        now = time.time()
        async with self._tx() as db:
            await db.execute(
                "INSERT OR REPLACE INTO slack_try_threads (channel, thread_ts, job_id, messages, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (thread.channel, thread.thread_ts, thread.job_id, json.dumps(thread.messages), now),
            )
            await db.execute("DELETE FROM slack_try_threads WHERE updated_at < ?", (now - KEEP_DAYS * 86400,))
