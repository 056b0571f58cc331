"""What every page of the dashboard is built with (bot/http/web/routes.py): the templates, the signed-in session and
its CSRF check, a page rendered with what the last action said, and a redirect that says something."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from bot.chat.commands import MAX_RUNS, MIN_RUNS
from bot.http.context import ApiContext
from bot.http.web import live, pages, words
from bot.http.web.session import Session, Sessions
from bot.words import texts
from storage.models import JobState

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        auto_reload=False,  # no stat() per row's include
    )
    env.globals.update(
        duration=texts.duration,
        age=pages.time_ago,
        gpus_label=texts.gpus_label,
        number=texts.number,
        words=pages.action_words,
        min_runs=MIN_RUNS,
        max_runs=MAX_RUNS,
        key_facts=pages.facts,
        sorts=pages.SORT_CHOICES,
        states=[str(s) for s in JobState],
        static_v=_static_version(),
        **words.GLOBALS,
    )
    return env


class NotSignedIn(Exception):
    pass


class CsrfRefused(Exception):
    pass


def plain_text(text: str, status: int) -> Response:
    return Response(text, status_code=status, media_type="text/plain; charset=utf-8")


def joined(pieces: list[live.Piece]) -> Markup:
    return Markup("".join(html for _, html in pieces))  # the templates' own output, escaped there


def _static_version() -> str:
    """A short hash of the live scripts: in their URLs, so a browser's shared worker is the one of this version."""
    digest = hashlib.blake2b(digest_size=4)
    for name in ("live.js", "live-hub.js", "job.js", "charts.js"):
        digest.update((STATIC / name).read_bytes())
    return digest.hexdigest()


class Kit:
    """The pages' shared parts, made once a router."""

    def __init__(self, ctx: ApiContext) -> None:
        self.env = templates()
        self.sessions = Sessions(ctx)
        self.store = ctx.runtime.store

    def html(
        self, name: str, session: Session | None, status: int = 200, request: Request | None = None, **values: Any
    ) -> HTMLResponse:
        """A page; with `request`, what the last action said is shown on it (once)."""
        said = self.sessions.said(request) if request is not None else None
        values.setdefault("said_while", "")
        shown = values.pop("said", "") or said or ""  # what the page itself says comes first
        body = self.env.get_template(name).render(
            me=session.principal if session else None, csrf=session.csrf if session else "", said=shown, **values
        )
        response = HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})
        if said is not None:
            self.sessions.clear_said(response)
        if session is not None and session.new:
            self.sessions.save(session, response)
        return response

    def said(self, target: str, text: str, session: Session) -> RedirectResponse:
        response = RedirectResponse(target, status_code=303)
        self.sessions.say(response, text, session.https)
        return response

    async def signed_in(self, request: Request) -> Session:
        session = await self.sessions.read(request)
        if session is None:
            raise NotSignedIn
        return session

    async def checked(self, request: Request, csrf: str) -> Session:
        """A form's sender: signed in, and the form is one of ours (its CSRF token matches the cookie's)."""
        session = await self.sessions.read(request)
        if session is None or session.new or not session.csrf_ok(csrf):
            raise CsrfRefused
        return session
