"""Who is asking: `Authorization: Bearer <token>` mapped to a user id, or anonymous on loopback (config switches;
off once API tokens are configured unless `[http] anonymous_loopback_with_tokens` says otherwise).

Tokens come from `TRAINBOT_API_TOKENS` (`token1=U123,token2=U456`) and the file `[http] tokens_file` (lines
`TOKEN USER_ID`, `#` comments); they are never logged. What a user may do is decided by the shared rules in
runner/access.py, as for Slack.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from bot.http.context import ApiContext, get_context
from runner.access import Caller
from runner.config import ConfigError, HttpConfig

ANONYMOUS = "http:anonymous"
TOKENS_ENV = "TRAINBOT_API_TOKENS"


@dataclass(frozen=True)
class Principal:
    user_id: str
    admin: bool

    def caller(self) -> Caller:
        return Caller(user_id=self.user_id, admin=self.admin)


def load_tokens(http: HttpConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """token -> user id, from the environment and the tokens file; a malformed entry is refused, naming where."""
    environ = os.environ if environ is None else environ
    tokens: dict[str, str] = {}
    for n, item in enumerate(filter(None, (i.strip() for i in environ.get(TOKENS_ENV, "").split(","))), start=1):
        token, sep, user = item.partition("=")
        if not sep or not token.strip() or not user.strip():
            raise ConfigError(text=f"{TOKENS_ENV}: entry {n} is not `TOKEN=USER_ID` (e.g. `s3cret=U123`)")
        tokens[token.strip()] = user.strip()
    if http.tokens_file is not None:
        try:
            text = http.tokens_file.read_text()
        except OSError as exc:
            raise ConfigError(text=f"[http] tokens_file: cannot read {http.tokens_file}: {exc.strerror}") from exc
        for n, line in enumerate(text.splitlines(), start=1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if len(words) != 2:
                raise ConfigError(text=f"[http] tokens_file: line {n} of {http.tokens_file} is not `TOKEN USER_ID`")
            tokens[words[0]] = words[1]
    return tokens


def is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _lookup(tokens: Mapping[str, str], presented: str) -> str | None:
    found = None
    for token, user in tokens.items():  # compare every one: the time taken says nothing about the tokens
        if hmac.compare_digest(token.encode(), presented.encode()):
            found = user
    return found


def anonymous_ok(ctx: ApiContext, request: Request) -> bool:
    """May this request, without a token, act as `http:anonymous`? Only from loopback (the client a trusted proxy
    names, through one), where `[http]` allows it: with API tokens configured that takes
    `anonymous_loopback_with_tokens`, since behind a reverse proxy on this host every request is loopback."""
    client = request.client.host if request.client else None
    return ctx.config.http.anonymous_loopback(bool(ctx.tokens)) and is_loopback(client)


async def current_user(request: Request, ctx: Annotated[ApiContext, Depends(get_context)]) -> Principal:
    """async only so that FastAPI calls it in the loop: a plain `def` dependency goes through its thread pool."""
    header = request.headers.get("authorization")
    admins = ctx.config.access.admins
    if header is None:
        if anonymous_ok(ctx, request):
            return Principal(ANONYMOUS, admin=ANONYMOUS in admins)
        raise HTTPException(
            401,
            "send `Authorization: Bearer <token>`; ask an admin for a token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    scheme, _, presented = header.partition(" ")
    user = _lookup(ctx.tokens, presented.strip()) if scheme.lower() == "bearer" and presented.strip() else None
    if user is None:
        raise HTTPException(
            401,
            "the token is not valid: send `Authorization: Bearer <token>` with a token "
            "from TRAINBOT_API_TOKENS or the tokens file",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Principal(user, admin=user in admins)


CurrentUser = Annotated[Principal, Depends(current_user)]
