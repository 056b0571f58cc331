"""The Web API methods (chat, views, files, conversations, ...): Slack's field checks and its answers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import ClassVar

from tests.slack_signing import TEAM_DOMAIN
from tests.slack_standin.core import StandInCore, _err, _flag, _missing
from tests.slack_standin.records import JSON, Upload


class WebApi(StandInCore):
    """One handler per Web API method (``_handlers``), each taking the request's params."""

    def _auth_test(self, params: JSON) -> JSON:
        return {
            "ok": True,
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": "Trainbot Test",
            "user": "trainbot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _post_message(self, params: JSON) -> JSON:
        channel = params.get("channel")
        if not self._channel_ok(channel):
            return _err("channel_not_found")
        error = self._content_error(params)
        if error is not None:
            return error
        msg = self._store(channel, params)
        reply = {k: v for k, v in msg.items() if k != "channel"}
        return {"ok": True, "channel": channel, "ts": msg["ts"], "message": reply}

    def _update(self, params: JSON) -> JSON:
        channel, ts = params.get("channel"), params.get("ts")
        if not self._channel_ok(channel):
            return _err("channel_not_found")
        if not ts:
            return _missing("ts")
        msg = self._find(channel, ts)
        if msg is None:
            return _err("message_not_found")
        if msg.get("bot_id") != self.bot_id:
            return _err("cant_update_message")
        error = self._content_error(params)
        if error is not None:
            return error
        self._apply_update(channel, ts, msg, params)
        return {"ok": True, "channel": channel, "ts": ts, "text": msg["text"], "message": dict(msg)}

    def _apply_update(self, channel: str, ts: str, msg: JSON, params: JSON) -> None:
        msg["text"] = params.get("text") or ""
        for key in ("blocks", "attachments"):
            msg.pop(key, None)
            if params.get(key) is not None:
                msg[key] = params[key]
        msg["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        self._updates.append((channel, ts, params))

    def _post_ephemeral(self, params: JSON) -> JSON:
        channel, user = params.get("channel"), params.get("user")
        if not self._channel_ok(channel):
            return _err("channel_not_found")
        if not user:
            return _missing("user")
        error = self._content_error(params)
        if error is not None:
            return error
        entry = {k: params.get(k) for k in ("channel", "user", "text", "blocks", "attachments", "thread_ts")}
        entry["message_ts"] = self._next_ts()
        self._ephemerals.append(entry)
        return {"ok": True, "message_ts": entry["message_ts"]}

    def _views_publish(self, params: JSON) -> JSON:
        user_id, view = params.get("user_id"), params.get("view")
        if not user_id:
            return _missing("user_id")
        if not isinstance(view, dict):
            return _missing("view") if view is None else _err("invalid_arguments", "[ERROR] invalid `view`")
        if view.get("type") != "home":
            return _err("invalid_arguments", "[ERROR] failed to match all allowed schemas [json-pointer:/view]")
        if len(view.get("blocks") or []) > 100:
            return _err("invalid_arguments", "[ERROR] no more than 100 items allowed [json-pointer:/view/blocks]")
        published = {
            **view,
            "id": f"V{uuid.uuid4().hex[:10].upper()}",
            "team_id": self.team_id,
            "app_id": self.app_id,
            "bot_id": self.bot_id,
            "hash": f"{time.time():.7f}",
        }
        self._views.append({"user_id": user_id, "view": published})
        return {"ok": True, "view": published}

    def _get_upload_url(self, params: JSON) -> JSON:
        filename, length = params.get("filename"), params.get("length")
        if not filename:
            return _missing("filename")
        try:
            size = int(length)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return _missing("length") if length is None else _err("invalid_arguments", "[ERROR] invalid `length`")
        if size <= 0:
            return _err("missing_argument")
        file_id = f"F{uuid.uuid4().hex[:10].upper()}"
        self._uploads[file_id] = Upload(file_id, str(filename), size)
        return {"ok": True, "upload_url": f"{self.base_url}/upload/v1/{file_id}", "file_id": file_id}

    def _complete_upload(self, params: JSON) -> JSON:
        files, channel = params.get("files"), params.get("channel_id")
        if not files:
            return _missing("files")
        if not isinstance(files, list) or not all(isinstance(f, dict) and f.get("id") for f in files):
            return _err("invalid_arguments", "[ERROR] invalid `files`")
        if not channel and params.get("channels"):
            channel = str(params["channels"]).split(",")[0]
        if channel and not self._channel_ok(channel):
            return _err("invalid_channel")
        if params.get("thread_ts") and not channel:
            return _err("invalid_arguments", "[ERROR] thread_ts requires channel_id")
        uploads = [self._uploads.get(f["id"]) for f in files]
        if any(u is None or u.content is None for u in uploads):
            return _err("file_not_found")
        shared = [u for u in uploads if u is not None]
        objs = []
        for u, f in zip(shared, files, strict=True):
            u.completed, u.title = True, f.get("title") or u.filename
            objs.append({"id": u.file_id, "name": u.filename, "title": u.title, "size": len(u.content or b"")})
        if channel:
            msg = self._store(
                channel,
                {"text": params.get("initial_comment"), "thread_ts": params.get("thread_ts"), "files": objs},
            )
            for u in shared:
                u.channel, u.thread_ts, u.share_ts = channel, params.get("thread_ts"), msg["ts"]
                u.initial_comment = params.get("initial_comment")
        return {"ok": True, "files": objs}

    def _connections_open(self, params: JSON) -> JSON:
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        return {"ok": True, "url": f"ws://{self.host}:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"}

    def _history(self, params: JSON) -> JSON:
        """Top-level messages (thread parents and broadcasts included), newest first, paged by cursor."""
        channel = params.get("channel")
        if not self._channel_ok(channel):
            return _err("channel_not_found")
        oldest, latest = float(params.get("oldest") or 0), float(params.get("latest") or "inf")
        found = [
            m
            for m in reversed(self._messages)
            if m["channel"] == channel
            and oldest <= float(m["ts"]) <= latest
            and (m.get("thread_ts") in (None, m["ts"]) or m.get("reply_broadcast"))
        ]
        return self._page(found, params)

    def _replies(self, params: JSON) -> JSON:
        """The parent then its replies, oldest first, paged by cursor."""
        channel, ts = params.get("channel"), params.get("ts")
        if not self._channel_ok(channel):
            return _err("channel_not_found")
        if not ts:
            return _missing("ts")
        parent = self._find(channel, ts)
        if parent is None:
            return _err("thread_not_found")
        return self._page(
            [parent, *(m for m in self._messages if m["channel"] == channel and m.get("thread_ts") == ts != m["ts"])],
            params,
        )

    def _page(self, found: list[JSON], params: JSON) -> JSON:
        limit = max(1, min(int(params.get("limit") or 100), 1000))
        start = int(params.get("cursor") or 0)
        page = found[start : start + limit]
        with_metadata = _flag(params.get("include_all_metadata"))
        out = [{k: v for k, v in m.items() if k != "channel" and (with_metadata or k != "metadata")} for m in page]
        more = start + limit < len(found)
        return {
            "ok": True,
            "messages": out,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _usergroups_list(self, params: JSON) -> JSON:
        users = _flag(params.get("include_users"))
        groups = [{k: v for k, v in g.items() if users or k != "users"} for g in self._usergroups.values()]
        return {"ok": True, "usergroups": groups}

    _handlers: ClassVar[dict[str, Callable[[WebApi, JSON], JSON]]] = {
        "auth.test": _auth_test,
        "chat.postMessage": _post_message,
        "chat.update": _update,
        "chat.postEphemeral": _post_ephemeral,
        "views.publish": _views_publish,
        "files.getUploadURLExternal": _get_upload_url,
        "files.completeUploadExternal": _complete_upload,
        "apps.connections.open": _connections_open,
        "conversations.history": _history,
        "conversations.replies": _replies,
        "usergroups.list": _usergroups_list,
    }
