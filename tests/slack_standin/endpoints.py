"""The HTTP endpoints: /api with auth, injected faults and rate limits; file uploads; response_url hooks."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from tests.slack_standin.core import _err, _flag
from tests.slack_standin.limits import PER_CHANNEL_LIMITS, WINDOW_LIMITS, RateLimit, _Bucket, _Window
from tests.slack_standin.records import JSON, RESPONSE_URL, UPLOAD, Call, RateLimitHit, ResponsePost, _Fault
from tests.slack_standin.web_api import WebApi

JSON_PARAMS = ("blocks", "attachments", "view", "files", "metadata")
MAX_RESPONSE_URL_USES = 5


class HttpEndpoints(WebApi):
    """The aiohttp handlers of ``/api/{method}``, ``/upload/v1/{file_id}`` and ``/hooks/{hook_id}``."""

    def fail_with(
        self,
        status: int = 500,
        *,
        for_seconds: float | None = None,
        times: int | None = None,
        methods: Iterable[str] | None = None,
        body: str | JSON | None = None,
    ) -> None:
        """Answer HTTP ``status`` for ``for_seconds`` and/or the next ``times`` requests (until
        ``clear_faults()`` if neither).  ``methods`` limits it to those API methods (or ``"upload"``,
        ``"response_url"``); default: every HTTP endpoint.  The body is an HTML error page (like Slack's
        edge) unless given (a dict is sent as JSON)."""
        until = None if for_seconds is None else time.monotonic() + for_seconds
        self._faults.append(_Fault(status, until, times, frozenset(methods) if methods else None, body))

    def clear_faults(self) -> None:
        self._faults.clear()

    def set_rate_limit(self, method: str, limit: RateLimit | None) -> None:
        """Set (or with None, remove) the limit of ``method`` (``"*"``: the default) and reset its buckets."""
        self.rate_limits[method] = limit
        self._buckets = {k: b for k, b in self._buckets.items() if k[0] != method}

    async def _params(self, request: web.Request) -> JSON:
        params: JSON = dict(request.query)
        ctype = request.content_type
        if ctype == "application/json":
            body = await request.json() if request.can_read_body else {}
            params.update(body if isinstance(body, dict) else {})
        elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            for k, v in (await request.post()).items():
                params[k] = v if isinstance(v, str) else {"filename": getattr(v, "filename", None)}
        for key in JSON_PARAMS:
            if isinstance(params.get(key), str):
                with contextlib.suppress(ValueError):
                    params[key] = json.loads(params[key])
        return params

    def _fault(self, method: str) -> _Fault | None:
        now = time.monotonic()
        self._faults = [f for f in self._faults if (f.until is None or f.until > now) and f.remaining != 0]
        for f in self._faults:
            if f.methods is None or method in f.methods:
                if f.remaining is not None:
                    f.remaining -= 1
                return f
        return None

    def _reply(
        self,
        method: str,
        params: JSON,
        status: int,
        body: Any,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        text: bool = False,
    ) -> web.Response:
        self._calls.append(Call(method, params, time.time(), status, body, token))
        if isinstance(body, dict):
            return web.json_response(body, status=status, headers=headers)
        ctype = "text/plain" if text else "text/html"
        return web.Response(text=str(body), status=status, headers=headers, content_type=ctype)

    def _fault_reply(self, method: str, params: JSON, fault: _Fault) -> web.Response:
        body = fault.body if fault.body is not None else f"<html><body><h1>{fault.status} Error</h1></body></html>"
        return self._reply(method, params, fault.status, body)

    def _auth_error(self, method: str, token: str | None) -> JSON | None:
        if not token:
            return _err("not_authed")
        wanted, other = (
            (self.app_token, self.bot_token) if method == "apps.connections.open" else (self.bot_token, self.app_token)
        )
        if token == other:
            return _err("not_allowed_token_type")
        return None if token == wanted else _err("invalid_auth")

    def _rate_limit(self, method: str, params: JSON) -> int:
        limit = self.rate_limits.get(method, self.rate_limits.get("*"))
        if limit is None:
            return 0
        key = str(params.get("channel") or "") if method in PER_CHANNEL_LIMITS else ""
        bucket = self._buckets.get((method, key))
        if bucket is None:
            bucket = self._buckets[(method, key)] = (_Window if method in WINDOW_LIMITS else _Bucket)(limit)
        retry_after = bucket.take()
        if retry_after:
            self._hits.append(RateLimitHit(method, key, retry_after, time.time()))
        return retry_after

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        try:
            params = await self._params(request)
        except ValueError:
            return self._reply(method, {}, 200, _err("invalid_json"))
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else params.pop("token", None)
        fault = self._fault(method)
        if fault is not None:
            return self._fault_reply(method, params, fault)
        error = self._auth_error(method, token)
        if error is not None:
            return self._reply(method, params, 200, error, token)
        retry_after = self._rate_limit(method, params)
        if retry_after:
            body, headers = _err("ratelimited"), {"Retry-After": str(retry_after)}
            return self._reply(method, params, 429, body, token, headers)
        handler = self._handlers.get(method)
        result = handler(self, params) if handler else {**_err("unknown_method"), "req_method": method}
        return self._reply(method, params, 200, result, token)

    async def _upload(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        fault = self._fault(UPLOAD)
        if fault is not None:
            return self._fault_reply(UPLOAD, {"file_id": file_id}, fault)
        upload = self._uploads.get(file_id)
        if upload is None:
            return self._reply(UPLOAD, {"file_id": file_id}, 404, "Not Found", text=True)
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            part = await reader.next()
            data = await part.read() if isinstance(part, aiohttp.BodyPartReader) else b""
        else:
            data = await request.read()
        upload.content = bytes(data)
        return self._reply(UPLOAD, {"file_id": file_id, "length": len(data)}, 200, f"OK - {len(data)}", text=True)

    async def _hook(self, request: web.Request) -> web.Response:
        hook_id = request.match_info["hook_id"]
        fault = self._fault(RESPONSE_URL)
        if fault is not None:
            return self._fault_reply(RESPONSE_URL, {"hook_id": hook_id}, fault)
        ctx = self._hooks.get(hook_id)
        try:
            body = await request.json()
        except ValueError:
            body = None
        params = {"hook_id": hook_id, "body": body}
        if ctx is None:
            return self._reply(RESPONSE_URL, params, 404, "no_service", text=True)
        if not isinstance(body, dict):
            return self._reply(RESPONSE_URL, params, 400, "invalid_payload", text=True)
        ctx["uses"] += 1
        if ctx["uses"] > MAX_RESPONSE_URL_USES:
            return self._reply(RESPONSE_URL, params, 404, "used_url", text=True)
        channel, ts = ctx["channel_id"], ctx["message_ts"]
        original = self._find(channel, ts) if ts else None
        if _flag(body.get("delete_original")):
            if original is not None:
                self._messages.remove(original)
        elif self._content_error(body) is not None:
            return self._reply(RESPONSE_URL, params, 400, "no_text", text=True)
        elif _flag(body.get("replace_original")) and original is not None:
            self._apply_update(channel, ts, original, body)
        elif body.get("response_type") == "in_channel":
            self._store(channel, body)
        self._responses.append(ResponsePost(hook_id, body, time.time(), dict(ctx)))
        return self._reply(RESPONSE_URL, params, 200, {"ok": True})
