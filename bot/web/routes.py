"""The dashboard's pages: sign in, the jobs table, a job, actions (through the shared handlers), GPUs.

Each page is server-rendered (readable without JavaScript); htmx's SSE extension keeps the live parts current
from `bot/web/live.py`. Actions are POSTed forms that carry the session's CSRF token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response, StreamingResponse
from markupsafe import Markup

from bot import texts
from bot.api.context import ApiContext
from bot.api.jobs import JobId
from bot.cluster_words import render_gpu_nodes
from bot.commands import JobCommand
from bot.mrkdwn import PLAIN
from bot.texts import error_text
from bot.web import forms, live, pages
from bot.web.form_words import form_error
from bot.web.session import Session, Sessions
from runner import leases
from runner.access import Caller, may_manage
from runner.job_request import MAX_JOB_NAME, MAX_NOTE
from runner.notes import set_note
from storage.errors import JobError
from storage.models import IllegalTransition, JobState

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, auto_reload=False)  # no stat() per row's include
    env.globals.update(duration=texts.duration, age=pages.age, gpus_label=texts.gpus_label,
                       states=[str(s) for s in JobState], cause=texts.cause, key_facts=pages.facts,
                       sorts=pages.SORT_CHOICES)
    return env


class NotSignedIn(Exception):
    pass


def build_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    env = templates()
    sessions = Sessions(ctx)
    store = ctx.runtime.store

    def html(name: str, session: Session | None, status: int = 200, **values: Any) -> HTMLResponse:
        body = env.get_template(name).render(me=session.principal if session else None,
                                             csrf=session.csrf if session else "", **values)
        response = HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})
        if session is not None and session.new:
            sessions.save(session, response)
        return response

    async def signed_in(request: Request) -> Session:
        session = await sessions.read(request)
        if session is None:
            raise NotSignedIn
        return session

    async def checked(request: Request, csrf: str) -> Session:
        """A form's sender: signed in, and the form is one of ours (its CSRF token matches the cookie's)."""
        session = await sessions.read(request)
        if session is None or session.new or not session.csrf_ok(csrf):
            raise CsrfRefused
        return session

    async def rows_html(filters: pages.Filters, session: Session, table: pages.Table | None = None) -> str:
        table = table or await pages.table_jobs(store, filters)
        return env.get_template("_rows.html").render(jobs=table.jobs, places=await pages.queue_places(store),
                                                     me=session.principal, filtered=filters.filtered)

    async def panel_html(job_id: str, session: Session) -> str:
        job = await store.require(job_id)
        return env.get_template("_panel.html").render(
            job=job, facts=await pages.job_facts(store, job), csrf=session.csrf,
            actions=pages.allowed_actions(job, session.principal, ctx.config))

    @router.get("/signin")
    async def signin_form(request: Request, next: str = "/") -> HTMLResponse:
        return html("signin.html", None, next=_local(next), error="")

    @router.post("/signin")
    async def signin(request: Request, token: Annotated[str, Form(max_length=500)] = "",
                     next: Annotated[str, Form(max_length=500)] = "/") -> Response:
        session = await sessions.issue(token.strip(), request) if token.strip() else None
        if session is None:
            return html("signin.html", None, 401, next=_local(next),
                        error="That token is not valid: paste a token from TRAINBOT_API_TOKENS or the tokens file "
                              "(ask an admin for one).")
        response = RedirectResponse(_local(next), status_code=303)
        sessions.save(session, response)
        return response

    @router.post("/signout")
    async def signout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
        session = await checked(request, csrf)
        response = RedirectResponse("/signin", status_code=303)
        await sessions.end(session, response)
        return response

    def table_filters(kind: str, state: str, owner: str, q: str, sort: str, after: str, before: str) -> pages.Filters:
        return pages.Filters(kind[:10], state[:20], owner[:100], q.strip()[:MAX_JOB_NAME],
                             sort if sort in pages.SORT_CHOICES and sort != "-created" else "", after[:300],
                             before[:300])

    @router.get("/")
    async def jobs_page(request: Request, kind: str = "", state: str = "", owner: str = "", q: str = "",
                        sort: str = "", after: str = "", before: str = "", said: str = "") -> HTMLResponse:
        session = await signed_in(request)
        filters = table_filters(kind, state, owner, q, sort, after, before)
        table = await pages.table_jobs(store, filters)
        if table.bad_cursor:
            said = said or "That page of the list is not one this server gave: here is the first page."
        count = await pages.table_count(store, filters)
        return html("jobs.html", session, filters=filters, table=table, count=count,
                    rows=Markup(await rows_html(filters, session, table)), said=said[:2000])

    @router.get("/web/feed/rows")
    async def rows_feed(request: Request, kind: str = "", state: str = "", owner: str = "", q: str = "",
                        sort: str = "", after: str = "", before: str = "") -> StreamingResponse:
        session = await signed_in(request)
        filters = table_filters(kind, state, owner, q, sort, after, before)
        return StreamingResponse(live.table_feed(store, lambda: rows_html(filters, session)),
                                 media_type="text/event-stream", headers=SSE_HEADERS)

    @router.get("/jobs/{job_id}")
    async def job_page(request: Request, job_id: JobId, said: str = "") -> HTMLResponse:
        session = await signed_in(request)
        job = await store.get(job_id)
        if job is None:
            return html("missing.html", session, 404, job_id=job_id)
        return html("job.html", session, job=job, panel=Markup(await panel_html(job_id, session)), said=said[:2000],
                    may_note=may_manage(session.principal.caller(), ctx.config.access, job))

    @router.get("/web/feed/jobs/{job_id}")
    async def job_feed(request: Request, job_id: JobId) -> StreamingResponse:
        session = await signed_in(request)
        await store.require(job_id)
        return StreamingResponse(live.job_feed(store, job_id, lambda job: panel_html(job.id, session)),
                                 media_type="text/event-stream", headers=SSE_HEADERS)

    @router.get("/jobs/{job_id}/log")
    async def whole_log(request: Request, job_id: JobId) -> Response:
        await signed_in(request)
        job = await store.require(job_id)
        log = job.train_run.log
        if log is None or not log.is_file():
            return plain_text(f"job {job_id} has no log yet", 404)
        return FileResponse(log, media_type="text/plain; charset=utf-8", filename=f"{job_id}.log")

    @router.get("/jobs/{job_id}/confirm")
    async def confirm(request: Request, job_id: JobId, action: str = "") -> HTMLResponse:
        session = await signed_in(request)
        job = await store.require(job_id)
        if action not in pages.allowed_actions(job, session.principal, ctx.config):
            return html("missing.html", session, 404, job_id=job_id, action=action)
        return html("confirm.html", session, job=job, action=action)

    @router.post("/jobs/{job_id}/note")
    async def note(request: Request, job_id: JobId, csrf: Annotated[str, Form(max_length=200)] = "",
                   note: Annotated[str, Form(max_length=MAX_NOTE * 2)] = "") -> Response:
        session = await checked(request, csrf)
        caller = Caller(user_id=session.principal.user_id, admin=session.principal.admin)
        text = note.replace("\r\n", "\n").replace("\r", "\n").strip()  # a form's line breaks are CRLF
        try:
            job = await set_note(store, caller, ctx.config.access, job_id, text)
        except JobError as exc:
            return RedirectResponse(f"/jobs/{job_id}?{_said(form_error(exc, ''))}", status_code=303)
        said = "The note is saved." if job.note else "The note is taken away."
        return RedirectResponse(f"/jobs/{job_id}?{_said(said)}", status_code=303)

    @router.post("/jobs/{job_id}/{action}")
    async def act(request: Request, job_id: JobId, action: str,
                  csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
        session = await checked(request, csrf)
        if action not in pages.ACTIONS:
            return plain_text(f"`{action}` is not an action; actions: {', '.join(pages.ACTIONS)}", 404)
        caller = Caller(user_id=session.principal.user_id, admin=session.principal.admin)
        try:
            reply = await ctx.handlers.job_command(JobCommand(action, job_id), caller)  # type: ignore[arg-type]
        except (JobError, IllegalTransition) as exc:  # the job changed under the form: say how
            words = error_text(exc) if isinstance(exc, JobError) else str(exc)
            return RedirectResponse(f"/jobs/{job_id}?{_said(words)}", status_code=303)
        target = "/" if action == "delete" and reply.ok else f"/jobs/{job_id}"
        return RedirectResponse(f"{target}?{_said(reply.text)}", status_code=303)

    @router.get("/new")
    async def new_job(request: Request, kind: str = "llm") -> HTMLResponse:
        session = await signed_in(request)
        return html("new.html", session, form=await forms.blank(ctx, kind))

    @router.post("/new")
    async def new_job_post(request: Request) -> Response:
        raw = await request.form()
        session = await checked(request, str(raw.get("csrf", "")))
        form = await forms.submit(ctx, session.principal, {k: str(v) for k, v in raw.items()})
        if form.created is not None:
            return RedirectResponse(f"/jobs/{form.created}", status_code=303)
        return html("new.html", session, 200 if form.error is None else 422, form=form)

    @router.get("/web/gpus")  # `/gpus` is the API's JSON
    async def gpus_page(request: Request) -> HTMLResponse:
        session = await signed_in(request)
        holders = leases.held(await store.holding())
        nodes = await ctx.runtime.supervisor.backend.cluster_gpus()
        cluster = render_gpu_nodes(nodes, PLAIN) if nodes is not None else None
        return html("gpus.html", session, snapshot=ctx.runtime.probe.snapshot(), holders=holders, cluster=cluster)

    return router


class CsrfRefused(Exception):
    pass


def plain_text(text: str, status: int) -> Response:
    return Response(text, status_code=status, media_type="text/plain; charset=utf-8")


def _local(path: str) -> str:
    """Only a path of this site (never `//elsewhere` or `https://...`): where to go after signing in."""
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/"


def _said(text: str) -> str:
    from urllib.parse import urlencode

    return urlencode({"said": text[:1000]})


def install(app: Any, ctx: ApiContext) -> None:
    """Mount the pages, their static files and the two refusals they need (sign in, CSRF) on the API's app."""
    from fastapi.staticfiles import StaticFiles

    app.include_router(build_router(ctx))
    app.mount("/static", StaticFiles(directory=STATIC), name="web-static")

    async def to_signin(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/web/feed/"):
            return plain_text("sign in first: /signin", 401)
        return RedirectResponse(f"/signin?{_next(request)}", status_code=303)

    async def csrf_refused(request: Request, exc: Exception) -> Response:
        return plain_text("refused: this form did not come from a trainbot page of your session (its CSRF token "
                         "is missing or wrong); reload the page and try again", 403)

    app.add_exception_handler(NotSignedIn, to_signin)
    app.add_exception_handler(CsrfRefused, csrf_refused)


def _next(request: Request) -> str:
    from urllib.parse import urlencode

    return urlencode({"next": request.url.path + (f"?{request.url.query}" if request.url.query else "")})
