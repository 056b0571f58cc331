"""The Slack stand-in behaves like Slack where the bot depends on it (driven by the real slack_sdk / Bolt)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tests.slack_signing import DEFAULT_CHANNEL, DEFAULT_USER
from tests.slack_standin import SlackStandIn

BOT, APP, SECRET = "xoxb-1-bot", "xapp-1-app", "s3cr3t"
CH = DEFAULT_CHANNEL


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    async with SlackStandIn(bot_token=BOT, app_token=APP, signing_secret=SECRET) as s:
        yield s


def bolt_request(body: str, headers: dict[str, str]) -> AsyncBoltRequest:
    return AsyncBoltRequest(body=body, headers={k: v for k, v in headers.items()})


def client(slack: SlackStandIn, token: str | None = BOT, **kwargs: Any) -> AsyncWebClient:
    """A client with no retry handlers unless given, so every Slack answer is visible."""
    kwargs.setdefault("retry_handlers", [])
    return AsyncWebClient(token=token, base_url=slack.api_url, **kwargs)


async def test_tokens_are_checked(slack: SlackStandIn) -> None:
    assert slack.api_url == f"http://127.0.0.1:{slack.port}/api/"
    me = await client(slack).auth_test()
    assert me["user_id"] == slack.bot_user_id and me["bot_id"] == slack.bot_id
    for token, error in [
        ("xoxb-wrong", "invalid_auth"),
        (None, "not_authed"),
        (APP, "not_allowed_token_type"),
    ]:
        with pytest.raises(SlackApiError) as e:
            await client(slack, token).chat_postMessage(channel=CH, text="hi")
        assert e.value.response.status_code == 200 and e.value.response["error"] == error
    with pytest.raises(SlackApiError, match="not_allowed_token_type"):
        await client(slack).apps_connections_open(app_token=BOT)
    assert slack.messages() == []
    assert [c.response["ok"] for c in slack.calls("chat.postMessage")] == [False, False, False]


async def test_post_update_and_threads(slack: SlackStandIn) -> None:
    web = client(slack)
    posted = await web.chat_postMessage(channel=CH, text="job 1 queued")
    ts = posted["ts"]
    assert posted["channel"] == CH and posted["message"]["text"] == "job 1 queued"
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*running*"}}]
    updated = await web.chat_update(channel=CH, ts=ts, text="job 1 running", blocks=blocks)
    assert updated["ts"] == ts
    assert slack.message(CH, ts)["text"] == "job 1 running"  # type: ignore[index]
    assert [u["text"] for u in slack.updates_of(ts)] == ["job 1 running"]
    with pytest.raises(SlackApiError, match="message_not_found"):
        await web.chat_update(channel=CH, ts="1234567890.000001", text="nope")
    reply = await web.chat_postMessage(channel=CH, text="epoch 1", thread_ts=ts)
    loud = await web.chat_postMessage(channel=CH, text="done", thread_ts=ts, reply_broadcast=True)
    assert [m["ts"] for m in slack.thread(CH, ts)] == [reply["ts"], loud["ts"]]
    assert [m["text"] for m in slack.messages(CH, top_level=True)] == ["job 1 running", "done"]
    assert slack.message(CH, ts)["reply_count"] == 2  # type: ignore[index]
    human = slack.seed_message(CH, "hello bot")
    with pytest.raises(SlackApiError, match="cant_update_message"):
        await web.chat_update(channel=CH, ts=human, text="edited")


async def test_required_fields_are_checked(slack: SlackStandIn) -> None:
    web = client(slack)
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("chat.postMessage", {"text": "no channel"}, "channel_not_found"),
        ("chat.postMessage", {"channel": CH}, "no_text"),
        ("chat.postMessage", {"channel": CH, "blocks": [{"text": "no type"}]}, "invalid_blocks_format"),
        ("chat.update", {"channel": CH, "text": "x"}, "invalid_arguments"),
        ("chat.postEphemeral", {"channel": CH, "text": "x"}, "invalid_arguments"),
        (
            "views.publish",
            {"user_id": DEFAULT_USER, "view": {"type": "modal", "blocks": []}},
            "invalid_arguments",
        ),
        ("files.getUploadURLExternal", {"filename": "a.txt"}, "invalid_arguments"),
        ("files.completeUploadExternal", {"files": [{"id": "F0NOPE"}]}, "file_not_found"),
        ("chat.scheduleMessage", {"channel": CH, "text": "x"}, "unknown_method"),
    ]
    for method, params, error in cases:
        with pytest.raises(SlackApiError) as e:
            await web.api_call(method, json=params)
        assert e.value.response["error"] == error, (method, params)
    with pytest.raises(SlackApiError) as e:
        await web.chat_postEphemeral(channel=CH, user="", text="x")
    assert e.value.response["response_metadata"]["messages"] == ["[ERROR] missing required field: user"]
    ok = await web.chat_postEphemeral(channel=CH, user=DEFAULT_USER, text="only you")
    assert slack.ephemerals(user=DEFAULT_USER)[0]["message_ts"] == ok["message_ts"]
    home = await web.views_publish(user_id=DEFAULT_USER, view={"type": "home", "blocks": []})
    assert slack.views(DEFAULT_USER)[0]["view"]["id"] == home["view"]["id"]


async def test_channels_can_be_restricted() -> None:
    async with SlackStandIn(bot_token=BOT, channels=["C0KNOWN"]) as slack:
        await client(slack).chat_postMessage(channel="C0KNOWN", text="ok")
        with pytest.raises(SlackApiError, match="channel_not_found"):
            await client(slack).chat_postMessage(channel="C0OTHER", text="lost")


async def test_files_upload_v2_lands_in_thread(slack: SlackStandIn) -> None:
    web = client(slack)
    parent = await web.chat_postMessage(channel=CH, text="job 7 finished")
    done = await web.files_upload_v2(
        channel=CH,
        thread_ts=parent["ts"],
        content=b"step,loss\n1,0.9\n",
        filename="loss.csv",
        title="loss curve",
        initial_comment="final metrics",
    )
    file_id = done["file"]["id"]
    [upload] = slack.uploads()
    assert (upload.file_id, upload.content, upload.length) == (file_id, b"step,loss\n1,0.9\n", 16)
    assert upload.completed and upload.channel == CH and upload.thread_ts == parent["ts"]
    [share] = slack.thread(CH, parent["ts"])
    assert share["text"] == "final metrics" and share["files"][0]["id"] == file_id
    assert [c.method for c in slack.calls()][-3:] == [
        "files.getUploadURLExternal",
        "upload",
        "files.completeUploadExternal",
    ]
    # multipart uploads are understood as well
    url = await web.files_getUploadURLExternal(filename="a.txt", length=3)
    form = aiohttp.FormData()
    form.add_field("filename", b"abc", filename="a.txt")
    async with aiohttp.ClientSession() as session, session.post(url["upload_url"], data=form) as r:
        assert r.status == 200 and await r.text() == "OK - 3"
    assert slack.uploads(completed=False)[0].content == b"abc"


async def test_rate_limit_burst_and_retry_after(slack: SlackStandIn) -> None:
    slack.set_rate_limit("chat.postMessage", (3, 30.0))  # 3 at once, then one per 10 s (per channel)
    web = client(slack)
    statuses: list[int] = []
    for i in range(5):
        try:
            statuses.append((await web.chat_postMessage(channel=CH, text=f"m{i}")).status_code)
        except SlackApiError as e:
            assert e.response["error"] == "ratelimited" and e.response.headers["Retry-After"] == "10"
            statuses.append(e.response.status_code)
    assert statuses == [200, 200, 200, 429, 429]
    assert [(h.method, h.key, h.retry_after) for h in slack.rate_limited()] == [("chat.postMessage", CH, 10)] * 2
    await web.chat_postMessage(channel="C0ELSEWHERE", text="other channels have their own bucket")
    assert len(slack.messages()) == 4


async def test_rate_limit_retry_handler_recovers(slack: SlackStandIn) -> None:
    slack.set_rate_limit("chat.update", (1, 1.0))
    web = client(slack, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)])
    ts = (await web.chat_postMessage(channel=CH, text="v0"))["ts"]
    started = time.monotonic()
    for i in (1, 2):
        assert (await web.chat_update(channel=CH, ts=ts, text=f"v{i}"))["ok"]
    assert 1.0 <= time.monotonic() - started < 4.0  # waited out Retry-After: 1
    assert [h.retry_after for h in slack.rate_limited("chat.update")] == [1]
    assert [c.status for c in slack.calls("chat.update")] == [200, 429, 200]
    assert [u["text"] for u in slack.updates_of(ts)] == ["v1", "v2"]


async def test_socket_mode_round_trip(slack: SlackStandIn) -> None:
    received: list[SocketModeRequest] = []

    async def on_request(sm: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        received.append(req)
        await sm.send_socket_mode_response(SocketModeResponse(req.envelope_id, payload={"text": "queued"}))

    sm = SocketModeClient(app_token=APP, web_client=client(slack))
    sm.socket_mode_request_listeners.append(on_request)
    try:
        await sm.connect()  # type: ignore[no-untyped-call]
        await slack.wait_for_socket()
        envelope_id = await slack.push_slash_command("status 7", user_id="U0ALICE")
        ack = await slack.wait_for_ack(envelope_id)
        assert ack == {"envelope_id": envelope_id, "payload": {"text": "queued"}}
        [req] = received
        assert req.type == "slash_commands" and req.payload["text"] == "status 7"
        assert req.payload["user_id"] == "U0ALICE" and req.payload["response_url"].startswith(slack.base_url)
        assert [c.token for c in slack.calls("apps.connections.open")] == [APP]
        assert slack.socket_connects == 1
        await slack.send_disconnect()  # Slack rotating the connection: the client reconnects
        await slack.wait_for(lambda: slack.socket_connects == 2, what="a reconnect")
        assert len(slack.calls("apps.connections.open")) == 2
    finally:
        await sm.close()  # type: ignore[no-untyped-call]


async def test_fail_with_500_then_recovery(slack: SlackStandIn) -> None:
    web = client(slack)
    slack.fail_with(500, for_seconds=0.3)
    with pytest.raises(SlackApiError) as e:
        await web.auth_test()
    assert e.value.response.status_code == 500

    async def healthy() -> bool:
        try:
            return bool((await web.auth_test())["ok"])
        except SlackApiError:
            return False

    assert await slack.wait_for(healthy, timeout=3.0)
    slack.fail_with(503, times=2, methods=["chat.postMessage"])
    quick = FixedValueRetryIntervalCalculator(0.05)
    retrying = client(slack, retry_handlers=[AsyncServerErrorRetryHandler(2, interval_calculator=quick)])
    assert (await retrying.chat_postMessage(channel=CH, text="eventually"))["ok"]
    assert [c.status for c in slack.calls("chat.postMessage")] == [503, 503, 200]


async def test_refused_connections_then_back_on_same_port(slack: SlackStandIn) -> None:
    web, port = client(slack), slack.port
    await slack.refuse_connections(for_seconds=0.3)
    with pytest.raises(aiohttp.ClientConnectionError):
        await web.auth_test()

    async def reachable() -> bool:
        try:
            return bool((await web.auth_test())["ok"])
        except aiohttp.ClientConnectionError:
            return False

    assert await slack.wait_for(reachable, timeout=3.0)
    assert slack.port == port and slack.is_up


async def test_response_url_semantics(slack: SlackStandIn) -> None:
    posted = await client(slack).chat_postMessage(channel=CH, text="job 2")
    payload = slack.block_actions_payload("cancel", "job-2")  # on the bot's latest message by default
    assert payload["container"]["message_ts"] == payload["message"]["ts"] == posted["ts"]
    hook = AsyncWebhookClient(payload["response_url"])
    assert (await hook.send(text="just you")).status_code == 200  # ephemeral: recorded only
    assert (await hook.send(text="everyone", response_type="in_channel")).status_code == 200
    assert (await hook.send(text="replaced", replace_original=True)).status_code == 200
    assert (await hook.send(delete_original=True)).status_code == 200
    assert (await hook.send(text="fifth")).status_code == 200
    too_many = await hook.send(text="sixth")  # a response_url is good for 5 uses
    assert (too_many.status_code, too_many.body) == (404, "used_url")
    assert [m["text"] for m in slack.messages(CH)] == ["everyone"]
    assert [u["text"] for u in slack.updates_of(posted["ts"])] == ["replaced"]
    assert [r.body.get("text") for r in slack.responses()] == [
        "just you",
        "everyone",
        "replaced",
        None,
        "fifth",
    ]


async def test_signed_http_requests_drive_bolt(slack: SlackStandIn) -> None:
    app = AsyncApp(client=slack.web_client(), signing_secret=SECRET)

    @app.command("/train")
    async def train(ack: Any, respond: Any, say: Any, command: dict[str, Any]) -> None:
        await ack(f"queued: {command['text']}")
        await respond("only you see this")
        button = {
            "type": "button",
            "action_id": "cancel",
            "value": "job-1",
            "text": {"type": "plain_text", "text": "x"},
        }
        await say(text="job 1", blocks=[{"type": "actions", "elements": [button]}])

    @app.action("cancel")
    async def cancel(ack: Any, respond: Any, body: dict[str, Any]) -> None:
        await ack()
        await respond(replace_original=True, text=f"cancelled {body['actions'][0]['value']}")

    body, headers = slack.signed_slash_command(text="qwen lora", user_id="U0BOB")
    res = await app.async_dispatch(bolt_request(body, headers))
    assert (res.status, res.body) == (200, "queued: qwen lora")
    [posted] = await slack.wait_for(lambda: slack.messages(CH))
    [resp] = await slack.wait_for(slack.responses)
    assert resp.body["text"] == "only you see this" and resp.context["channel_id"] == CH

    body, headers = slack.signed_block_actions(action_id="cancel", value="job-1")
    assert (await app.async_dispatch(bolt_request(body, headers))).status == 200
    [update] = await slack.wait_for(lambda: slack.updates_of(posted["ts"]))
    assert update["text"] == "cancelled job-1"

    # the same, delivered over HTTP to Bolt's own aiohttp server
    async with TestServer(app.web_app(path="/slack/events"), host="127.0.0.1") as server:
        status, text = await slack.post_to_app(
            str(server.make_url("/slack/events")), *slack.signed_slash_command(text="over http")
        )
    assert (status, text) == (200, "queued: over http")

    body, headers = slack.signed_slash_command(secret="wrong", text="x")
    assert (await app.async_dispatch(bolt_request(body, headers))).status == 401
    body, headers = slack.signed_slash_command(text="x", timestamp=int(time.time()) - 600)
    assert (await app.async_dispatch(bolt_request(body, headers))).status == 401


async def test_bolt_socket_mode_handler(slack: SlackStandIn) -> None:
    app = AsyncApp(client=slack.web_client(), signing_secret=SECRET)

    @app.command("/train")
    async def train(ack: Any) -> None:
        await ack("queued")

    @app.event("app_home_opened")
    async def home(client: AsyncWebClient, event: dict[str, Any]) -> None:
        await client.views_publish(user_id=event["user"], view={"type": "home", "blocks": []})

    handler = AsyncSocketModeHandler(app, APP)
    await handler.connect_async()  # type: ignore[no-untyped-call]
    try:
        await slack.wait_for_socket()
        ack = await slack.wait_for_ack(await slack.push_slash_command("go"))
        assert ack["payload"] == {"text": "queued"}
        event_ack = await slack.wait_for_ack(await slack.push_event({"type": "app_home_opened", "user": "U1"}))
        assert "payload" not in event_ack or not event_ack["payload"]
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]
