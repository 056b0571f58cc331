"""The Slack front end's own state: where each job's card is (its channel and message ts; the ts is the job's
thread). Written and read only by bot/'s Slack code (the notifier, the cards, the log upload): the core's jobs and
notices say which job, Slack maps the job to its card. A card outlives its job's row, so a deleted job's card can
still be marked deleted; then it is forgotten.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from storage.connection import Connection


@dataclass(frozen=True)
class SlackCard:
    job_id: str
    channel: str
    ts: str


class SlackCards(Connection):
    async def slack_card(self, job_id: str) -> SlackCard | None:
        rows = await self._read("SELECT job_id, channel, ts FROM slack_cards WHERE job_id = ?", (job_id,))
        return SlackCard(*rows[0]) if rows else None

    async def slack_card_at(self, channel: str, ts: str) -> SlackCard | None:
        """The card that is this message (a reply in its thread concerns its job)."""
        rows = await self._read(
            "SELECT job_id, channel, ts FROM slack_cards WHERE channel = ? AND ts = ?", (channel, ts)
        )
        return SlackCard(*rows[0]) if rows else None

    async def slack_cards(self, job_ids: Iterable[str]) -> dict[str, SlackCard]:
        """The cards of these jobs (those that have one), by job."""
        ids = list(job_ids)
        cards: dict[str, SlackCard] = {}
        for at in range(0, len(ids), 500):  # SQLite's limit on parameters is far above, but not unbounded
            chunk = ids[at : at + 500]
            rows = await self._read(
                f"SELECT job_id, channel, ts FROM slack_cards WHERE job_id IN ({', '.join('?' * len(chunk))})", chunk
            )
            cards.update((r[0], SlackCard(*r)) for r in rows)
        return cards

    async def save_slack_card(self, card: SlackCard) -> None:
        async with self._tx() as db:
            await db.execute(
                "INSERT OR REPLACE INTO slack_cards (job_id, channel, ts) VALUES (?, ?, ?)",
                (card.job_id, card.channel, card.ts),
            )

    async def forget_slack_card(self, job_id: str) -> None:
        async with self._tx() as db:
            await db.execute("DELETE FROM slack_cards WHERE job_id = ?", (job_id,))
