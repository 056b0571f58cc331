"""The dashboard's pages: sign in, the jobs table, a job, actions (through the job service), GPUs.

Each page is server-rendered (readable without JavaScript); static/live.js keeps the live parts current through
one stream a browser (`POST /web/live`, bot/http/web/live.py), shared by its tabs. Actions are POSTed forms that carry
the session's CSRF token.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError

from bot.chat.commands import MAX_RUNS
from bot.compare import WrongCount, compare
from bot.http.api.jobs import JobId
from bot.http.context import ApiContext
from bot.http.web import forms, live, pages, try_feed
from bot.http.web.form_words import form_error
from bot.http.web.kit import STATIC, CsrfRefused, Kit, NotSignedIn, joined, plain_text
from bot.http.web.session import Session
from bot.words.cluster import render_gpu_nodes
from bot.words.format import PLAIN
from bot.words.refusals import error_text
from bot.words.texts import comparison_facts, comparison_settings
from runner import leases
from runner.access import may_manage
from runner.actions import Action
from runner.job_request import MAX_JOB_NAME, MAX_NOTE
from storage.errors import JobError, JobNotFound
from storage.models import Job

SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
METRIC_CHARTS_JSON = pages.script_json(pages.METRIC_CHARTS)


def build_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    kit = Kit(ctx)
    env, sessions, store = kit.env, kit.sessions, kit.store
    html, said, signed_in, checked = kit.html, kit.said, kit.signed_in, kit.checked

    async def rows(filters: pages.Filters, table: pages.Table | None = None) -> list[live.Piece]:
        """The table's rows (or its one "no jobs" row), each keyed by its element id."""
        jobs = (table or await pages.table_jobs(store, filters)).jobs
        macros = env.get_template("_rows.html").module
        if not jobs:
            return [("jobs-empty", str(macros.empty(filters.filtered)).strip())]  # type: ignore[attr-defined]
        places = await pages.queue_places(store)
        return [(f"job-{j.id}", str(macros.row(j, places)).strip()) for j in jobs]  # type: ignore[attr-defined]

    async def panel(job: Job, session: Session) -> list[live.Piece]:
        """A job's panel in its parts (the template's blocks), each keyed by its element id `part-<block>`."""
        template = env.get_template("_panel.html")
        context = template.new_context(
            {
                "job": job,
                "facts": await pages.job_facts(store, job),
                "csrf": session.csrf,
                "actions": pages.allowed_actions(job, session.principal, ctx.config),
            }
        )
        return [(f"part-{name}", "".join(block(context)).strip()) for name, block in template.blocks.items()]

    @router.get("/signin")
    async def signin_form(request: Request, next: str = "/") -> HTMLResponse:
        return html("signin.html", None, next=_local(next), error="")

    @router.post("/signin")
    async def signin(
        request: Request,
        token: Annotated[str, Form(max_length=500)] = "",
        next: Annotated[str, Form(max_length=500)] = "/",
    ) -> Response:
        session = await sessions.issue(token.strip(), request) if token.strip() else None
        if session is None:
            return html(
                "signin.html",
                None,
                401,
                next=_local(next),
                error="That token is not valid: paste a token from TRAINBOT_API_TOKENS or the tokens file "
                "(ask an admin for one).",
            )
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
        return pages.Filters(
            kind[:10],
            state[:20],
            owner[:100],
            q.strip()[:MAX_JOB_NAME],
            sort if sort in pages.SORT_CHOICES and sort != "-created" else "",
            after[:300],
            before[:300],
        )

    @router.get("/")
    async def jobs_page(
        request: Request,
        kind: str = "",
        state: str = "",
        owner: str = "",
        q: str = "",
        sort: str = "",
        after: str = "",
        before: str = "",
    ) -> HTMLResponse:
        session = await signed_in(request)
        filters = table_filters(kind, state, owner, q, sort, after, before)
        table = await pages.table_jobs(store, filters)
        bad = "That page of the list is not one this server gave: here is the first page." if table.bad_cursor else ""
        pieces = await rows(filters, table)
        view = {"kind": "rows", "query": filters.query(), "have": live.cursor_of(pieces)}
        return html(
            "jobs.html",
            session,
            request=request,
            filters=filters,
            table=table,
            count=await pages.table_count(store, filters),
            rows=joined(pieces),
            view=view,
            said=bad,
        )

    @router.get("/jobs/{job_id}")
    async def job_page(request: Request, job_id: JobId) -> HTMLResponse:
        session = await signed_in(request)
        job = await store.get(job_id)
        if job is None:
            return html("missing.html", session, 404, job_id=job_id)
        pieces = await panel(job, session)
        view = {"kind": "job", "job": job.id, "parts": dict(live.cursor_of(pieces))}
        return html(
            "job.html",
            session,
            request=request,
            said_while=str(job.state),
            job=job,
            panel=joined(pieces),
            view=view,
            metric_charts=METRIC_CHARTS_JSON,
            may_note=may_manage(session.principal.caller(), ctx.config.access, job),
        )

    @router.post("/web/live")
    async def live_stream(request: Request) -> Response:
        """Every open tab's live view in one stream (a POST: the tabs' cursors can be longer than a URL)."""
        session = await signed_in(request)
        try:
            wanted = live.LiveRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the body"
            return plain_text(
                f"this live request is not valid: {where}: {first['msg']} (the body is what "
                '/static/live-hub.js sends: {"views": {"<tab>": {"kind": "rows", "query": "", '
                '"have": []}}})',
                422,
            )
        views = live.followers(
            wanted, rows=lambda query: rows(pages.Filters.from_query(query)), parts=lambda job: panel(job, session)
        )
        chunks = live.stream(store, views)
        if "gzip" in request.headers.get("accept-encoding", ""):
            return StreamingResponse(
                live.gzipped(chunks),
                media_type="text/event-stream",
                headers=SSE_HEADERS | {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"},
            )
        return StreamingResponse(
            chunks, media_type="text/event-stream", headers=SSE_HEADERS | {"Vary": "Accept-Encoding"}
        )

    @router.get("/jobs/{job_id}/log")
    async def whole_log(request: Request, job_id: JobId) -> Response:
        await signed_in(request)
        job = await store.require(job_id)
        log = job.train_run.log
        if log is None or not log.is_file():
            return plain_text(f"job {job_id} has no log yet", 404)
        return FileResponse(log, media_type="text/plain; charset=utf-8", filename=f"{job_id}.log")

    @router.post("/web/try/jobs/{job_id}")
    async def try_box(request: Request, job_id: JobId) -> Response:
        """The "Try it" box: the answer streamed as it is generated (bot/http/web/try_feed.py)."""
        return await try_feed.answer(request, job_id, ctx, checked)

    @router.get("/jobs/{job_id}/confirm")
    async def confirm(request: Request, job_id: JobId, action: str = "") -> HTMLResponse:
        session = await signed_in(request)
        job = await store.require(job_id)
        if action not in pages.allowed_actions(job, session.principal, ctx.config):
            return html("missing.html", session, 404, job_id=job_id, action=action)
        return html("confirm.html", session, job=job, action=action, w=pages.action_words(job, action))

    @router.post("/jobs/{job_id}/note")
    async def note(
        request: Request,
        job_id: JobId,
        csrf: Annotated[str, Form(max_length=200)] = "",
        note: Annotated[str, Form(max_length=MAX_NOTE * 2)] = "",
    ) -> Response:
        session = await checked(request, csrf)
        text = note.replace("\r\n", "\n").replace("\r", "\n").strip()  # a form's line breaks are CRLF
        try:
            job = await ctx.runtime.jobs.note(job_id, text, session.principal.caller())
        except JobError as exc:
            return said(f"/jobs/{job_id}", form_error(exc, ""), session)
        return said(f"/jobs/{job_id}", "The note is saved." if job.note else "The note is taken away.", session)

    @router.post("/jobs/{job_id}/{action}")
    async def act(
        request: Request, job_id: JobId, action: str, csrf: Annotated[str, Form(max_length=200)] = ""
    ) -> Response:
        session = await checked(request, csrf)
        if action not in pages.ACTIONS:
            return plain_text(f"`{action}` is not an action; actions: {', '.join(pages.ACTIONS)}", 404)
        try:
            before = await store.require(job_id)
            after = await ctx.runtime.jobs.act(job_id, Action(action), session.principal.caller())
        except JobError as exc:  # the job changed under the form: say how
            return said(f"/jobs/{job_id}", error_text(exc), session)
        return said(
            "/" if after is None else f"/jobs/{job_id}", pages.done_words(before, Action(action), after), session
        )

    @router.get("/compare")
    async def compare_page(
        request: Request,
        job: Annotated[list[str], Query(max_length=MAX_RUNS * 2)] = [],  # noqa: B006 (FastAPI reads it, never changed)
    ) -> HTMLResponse:
        session = await signed_in(request)
        try:
            cmp = await compare(store, [j[:100] for j in job])
        except (WrongCount, JobNotFound) as exc:
            return html(
                "compare.html",
                session,
                404 if isinstance(exc, JobNotFound) else 422,
                cmp=None,
                error=error_text(exc),
                ids=job[: MAX_RUNS * 2],
            )
        return html(
            "compare.html",
            session,
            cmp=cmp,
            facts=comparison_facts(cmp),
            settings=comparison_settings(cmp),
            data=pages.compare_data(cmp),
            error="",
            ids=list(cmp.ids),
        )

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
        return html("new.html", session, 422 if form.errors else 200, form=form)

    @router.get("/web/gpus")  # `/gpus` is the API's JSON
    async def gpus_page(request: Request) -> HTMLResponse:
        session = await signed_in(request)
        holders = leases.held(await store.holding())
        nodes = await ctx.runtime.supervisor.backend.cluster_gpus()
        cluster = render_gpu_nodes(nodes, PLAIN) if nodes is not None else None
        return html("gpus.html", session, snapshot=ctx.runtime.probe.snapshot(), holders=holders, cluster=cluster)

    return router


def _local(path: str) -> str:
    """Only a path of this site (never `//elsewhere` or `https://...`): where to go after signing in."""
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/"


def install(app: Any, ctx: ApiContext) -> None:
    """Mount the pages, their static files and the two refusals they need (sign in, CSRF) on the API's app."""
    from fastapi.staticfiles import StaticFiles

    app.include_router(build_router(ctx))
    app.mount("/static", StaticFiles(directory=STATIC), name="web-static")

    async def to_signin(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/web/live"):
            return plain_text("sign in first: /signin", 401)
        return RedirectResponse(f"/signin?{_next(request)}", status_code=303)

    async def csrf_refused(request: Request, exc: Exception) -> Response:
        return plain_text(
            "refused: this form did not come from a trainbot page of your session (its CSRF token "
            "is missing or wrong); reload the page and try again",
            403,
        )

    app.add_exception_handler(NotSignedIn, to_signin)
    app.add_exception_handler(CsrfRefused, csrf_refused)


def _next(request: Request) -> str:
    from urllib.parse import urlencode

    return urlencode({"next": request.url.path + (f"?{request.url.query}" if request.url.query else "")})
