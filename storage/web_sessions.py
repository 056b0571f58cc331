"""The web page's signed-in sessions: the server's half of a session cookie (bot/http/web/session.py).

The cookie carries a session's id, signed; what the session was made with (a keyed hash of the API token, so that
withdrawing the token ends it) stays here. Ending a session deletes its row: a copy of the cookie is then worth
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.connection import Connection


@dataclass(frozen=True)
class WebSession:
    id: str
    user_id: str
    token_ref: str
    created_at: float


class WebSessions(Connection):
    async def add_web_session(self, session: WebSession, *, expire_before: float) -> None:
        """Keep a new session; those made before `expire_before` (their cookies have expired) go."""
        async with self._tx() as db:
            await db.execute("DELETE FROM web_sessions WHERE created_at < ?", (expire_before,))
            await db.execute(
                "INSERT INTO web_sessions (id, user_id, token_ref, created_at) VALUES (?, ?, ?, ?)",
                (session.id, session.user_id, session.token_ref, session.created_at),
            )

    async def web_session(self, session_id: str) -> WebSession | None:
        rows = await self._read(
            "SELECT id, user_id, token_ref, created_at FROM web_sessions WHERE id = ?", (session_id,)
        )
        return WebSession(*rows[0]) if rows else None

    async def end_web_session(self, session_id: str) -> None:
        async with self._tx() as db:
            await db.execute("DELETE FROM web_sessions WHERE id = ?", (session_id,))
