"""Who is looking at a page: a signed, HttpOnly session cookie, issued once for an API token (or, where the config
allows it, to anonymous loopback visitors), carrying the user id and a CSRF token that every form posts back.

The signing key: `TRAINBOT_SESSION_SECRET`, else a random key kept (0600) in the data dir so sessions survive a
restart of `trainbot serve`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from bot.api.auth import ANONYMOUS, Principal, anonymous_ok
from bot.api.context import ApiContext

SECRET_ENV = "TRAINBOT_SESSION_SECRET"
COOKIE = "trainbot_session"
MAX_AGE_S = 7 * 24 * 3600
KEY_FILE = "web_session.key"


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str
    token: str = ""  # the API token's fingerprint (not the token); "" for an anonymous loopback session
    new: bool = False  # issued by this request: the response must set the cookie

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
        self._signer = URLSafeTimedSerializer(session_secret(ctx.config.data_dir), salt="trainbot-web")
        self._users = {_fingerprint(token): user for token, user in ctx.tokens.items()}

    def _anonymous_ok(self, request: Request) -> bool:
        return anonymous_ok(self.ctx, request)

    def _principal(self, user_id: str) -> Principal:
        return Principal(user_id, admin=user_id in self.ctx.config.access.admins)

    def read(self, request: Request) -> Session | None:
        """The request's session; a new anonymous one on loopback where the config allows it; else None."""
        raw = request.cookies.get(COOKIE)
        if raw:
            try:
                data = self._signer.loads(raw, max_age=MAX_AGE_S)
                user, fingerprint = str(data["u"]), str(data["t"])
                # a session lasts while its token does (removed from the config: signed out), and an anonymous
                # one while anonymous loopback visitors are allowed
                valid = self._users.get(fingerprint) == user if fingerprint else self._anonymous_ok(request)
                if valid:
                    return Session(self._principal(user), str(data["c"]), fingerprint)
            except (BadSignature, KeyError, TypeError):
                pass
        if self._anonymous_ok(request):
            return Session(self._principal(ANONYMOUS), secrets.token_urlsafe(24), new=True)
        return None

    def issue(self, token: str) -> Session | None:
        """A session for a valid API token; None for any other."""
        fingerprint = _fingerprint(token)
        user = self._users.get(fingerprint)
        if user is None:  # looked up by its hash: the time taken says nothing about the tokens
            return None
        return Session(self._principal(user), secrets.token_urlsafe(24), fingerprint, new=True)

    def save(self, session: Session, response: Response) -> None:
        value = self._signer.dumps({"u": session.principal.user_id, "c": session.csrf, "t": session.token})
        response.set_cookie(COOKIE, value, max_age=MAX_AGE_S, httponly=True, samesite="lax", path="/")

    @staticmethod
    def clear(response: Response) -> None:
        response.delete_cookie(COOKIE, path="/")


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:24]
