"""Who is looking at a page: a signed, HttpOnly session cookie, issued once for an API token (or, where the config
allows it, to anonymous loopback visitors: bot/http/auth.anonymous_ok), carrying the user id, the session's id and
a CSRF token that every form posts back.

The cookie holds nothing derived from the token: a signed-in session is a row in the store (storage/web_sessions.py)
that names the token by a hash keyed with the signing key; it ends at sign-out (the row goes: a copied cookie is
then worthless), when its token is withdrawn, or after a week. The cookie is `Secure` when the page was served
over HTTPS: directly, or through a proxy of `[http] trusted_proxies` that says so (X-Forwarded-Proto).

The signing key: `TRAINBOT_SESSION_SECRET`, else a random key kept (0600) in the data dir so sessions survive a
restart of `trainbot serve`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from bot.http.auth import ANONYMOUS, Principal, anonymous_ok
from bot.http.context import ApiContext
from storage.web_sessions import WebSession

SECRET_ENV = "TRAINBOT_SESSION_SECRET"
COOKIE = "trainbot_session"
SAID_COOKIE = "trainbot_said"  # what an action said, shown once on the page it leads to
SAID_MAX_AGE_S = 60
MAX_AGE_S = 7 * 24 * 3600
KEY_FILE = "web_session.key"


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str
    id: str = ""  # the store's session id; "" for an anonymous loopback session (nothing stored)
    new: bool = False  # issued by this request: the response must set the cookie
    https: bool = False  # the request came over HTTPS: the cookie is Secure

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(self.csrf.encode(), presented.encode())


def session_secret(data_dir: Path) -> str:
    """The env's secret, else the data dir's key (made once, readable only by its owner)."""
    if secret := os.environ.get(SECRET_ENV, "").strip():
        return secret
    path = data_dir / KEY_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


class Sessions:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.store = ctx.runtime.store
        secret = session_secret(ctx.config.data_dir)
        self._signer = URLSafeTimedSerializer(secret, salt="trainbot-web")
        self._said = URLSafeTimedSerializer(secret, salt="trainbot-web-said")
        self._key = hashlib.sha256(f"trainbot-web-token:{secret}".encode()).digest()
        self._users = {self._token_ref(token): user for token, user in ctx.tokens.items()}

    def _token_ref(self, token: str) -> str:
        """The token as the store names it: keyed with the signing key, so the store alone does not reveal it."""
        return hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()

    def _principal(self, user_id: str) -> Principal:
        return Principal(user_id, admin=user_id in self.ctx.config.access.admins)

    async def read(self, request: Request) -> Session | None:
        """The request's session; a new anonymous one on loopback where the config allows it; else None."""
        https = request.url.scheme == "https"
        raw = request.cookies.get(COOKIE)
        if raw:
            try:
                data = self._signer.loads(raw, max_age=MAX_AGE_S)
                user, session_id, csrf = str(data["u"]), str(data["s"]), str(data["c"])
            except (BadSignature, KeyError, TypeError):
                user = session_id = csrf = ""
            if session_id:
                kept = await self.store.web_session(session_id)
                # a session lasts while it is kept (not signed out) and its token is still configured
                if kept is not None and kept.user_id == user and self._users.get(kept.token_ref) == user:
                    return Session(self._principal(user), csrf, session_id, https=https)
            elif user == ANONYMOUS and anonymous_ok(self.ctx, request):  # while anonymous visitors are allowed
                return Session(self._principal(user), csrf, https=https)
        if anonymous_ok(self.ctx, request):
            return Session(self._principal(ANONYMOUS), secrets.token_urlsafe(24), new=True, https=https)
        return None

    async def issue(self, token: str, request: Request) -> Session | None:
        """A session for a valid API token; None for any other."""
        ref = self._token_ref(token)
        user = self._users.get(ref)
        if user is None:  # looked up by its keyed hash: the time taken says nothing about the tokens
            return None
        now = time.time()
        kept = WebSession(secrets.token_urlsafe(24), user, ref, now)
        await self.store.add_web_session(kept, expire_before=now - MAX_AGE_S)
        return Session(
            self._principal(user), secrets.token_urlsafe(24), kept.id, new=True, https=request.url.scheme == "https"
        )

    async def end(self, session: Session, response: Response) -> None:
        """Sign out: the session is forgotten by the store, and the browser's cookie cleared."""
        if session.id:
            await self.store.end_web_session(session.id)
        response.delete_cookie(COOKIE, path="/", secure=session.https, httponly=True, samesite="lax")

    def save(self, session: Session, response: Response) -> None:
        value = self._signer.dumps({"u": session.principal.user_id, "s": session.id, "c": session.csrf})
        response.set_cookie(
            COOKIE, value, max_age=MAX_AGE_S, httponly=True, samesite="lax", path="/", secure=session.https
        )

    def say(self, response: Response, text: str, https: bool) -> None:
        """What an action said, for the next page only: in a short-lived signed cookie, not in the URL (where it
        would stay in the history, a bookmark or a link, and come back with every reload)."""
        response.set_cookie(
            SAID_COOKIE,
            self._said.dumps(text[:1000]),
            max_age=SAID_MAX_AGE_S,
            httponly=True,
            samesite="lax",
            path="/",
            secure=https,
        )

    def said(self, request: Request) -> str | None:
        """What the last action said ("" if it can't be read), None if it said nothing: a page that shows it
        clears it (`clear_said`)."""
        raw = request.cookies.get(SAID_COOKIE)
        if not raw:
            return None
        try:
            return str(self._said.loads(raw, max_age=SAID_MAX_AGE_S))
        except BadSignature:
            return ""

    def clear_said(self, response: Response) -> None:
        response.delete_cookie(SAID_COOKIE, path="/", httponly=True, samesite="lax")
