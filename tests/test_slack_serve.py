"""`trainbot serve` as people run it: a process, tokens from the environment, the Web API URL from the command line."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

from tests.conftest import VENV_BIN
from tests.slack_env import APP, BOT, SECRET, answers, fake_config, standin

TRAINBOT = VENV_BIN / "trainbot"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve(tmp_path: Path, env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    return await asyncio.create_subprocess_exec(
        str(TRAINBOT),
        "--config",
        str(tmp_path / "trainbot.toml"),
        "-v",
        "serve",
        *args,
        cwd=tmp_path,
        env=base | env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_serve_in_http_mode(tmp_path: Path) -> None:
    fake_config(tmp_path)
    port = free_port()
    lines: list[str] = []
    async with standin() as slack:
        proc = await serve(
            tmp_path,
            {"SLACK_BOT_TOKEN": BOT, "SLACK_SIGNING_SECRET": SECRET},
            "--slack-api-url",
            slack.api_url.rstrip("/"),
            "--slack-port",
            str(port),
            "--port",
            "0",
        )
        assert proc.stderr is not None

        async def drain() -> None:
            assert proc.stderr is not None
            async for line in proc.stderr:
                lines.append(line.decode(errors="replace"))

        reader = asyncio.create_task(drain())
        try:
            await slack.wait_for(
                lambda: any("serving Slack in http mode" in ln for ln in lines), 30, what="the bot to listen"
            )
            url = f"http://127.0.0.1:{port}/slack/events"
            assert (await slack.post_to_app(url, *slack.signed_slash_command(text="help")))[0] == 200
            await slack.wait_for(lambda: answers(slack), 10, what="the help text")
            assert (await slack.post_to_app(url, *slack.signed_slash_command(secret="x", text="help")))[0] == 401
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = await asyncio.wait_for(proc.wait(), 15)
            await reader
    assert rc == 0
    log = "".join(lines)
    assert "xoxb-1-bot" not in log and SECRET not in log and "Sending a request" in log  # debug on, tokens out
    assert "will be unused" not in log  # Bolt is given our client alone, not a token beside it


async def test_serve_says_what_is_missing(tmp_path: Path) -> None:
    fake_config(tmp_path)
    proc = await serve(tmp_path, {"SLACK_APP_TOKEN": APP})
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2 and b"set SLACK_BOT_TOKEN" in err
    proc = await serve(tmp_path, {"SLACK_BOT_TOKEN": BOT})
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2 and b"SLACK_SIGNING_SECRET" in err and b"SLACK_APP_TOKEN" in err


async def test_serve_in_socket_mode(tmp_path: Path) -> None:
    async with standin() as slack:
        fake_config(tmp_path, slack_api_url=slack.api_url)  # the Web API URL from the config this time
        proc = await serve(tmp_path, {"SLACK_BOT_TOKEN": BOT, "SLACK_APP_TOKEN": APP}, "--port", "0")
        try:
            await slack.wait_for_socket(30)
            await slack.wait_for_ack(await slack.push_slash_command("help"))
            await slack.wait_for(lambda: answers(slack), 10, what="the help text")
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0 and b"serving Slack in socket mode" in err and APP.encode() not in err
    assert b"will be unused" not in err
