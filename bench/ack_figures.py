"""Ack latency of the Slack front end beside a bare Bolt app, against the Slack stand-in of tests/ on 127.0.0.1: a
steady stream, the same while slow commands are in flight and a job runs, and bursts; each request timed by
bench.ack_client in a process of its own."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bench.common import REPO, Row, fake_config, pct
from storage.jobs import JobStore
from tests.slack_signing import DEFAULT_CHANNEL
from tests.slack_standin import SlackStandIn

BOT, SECRET = "xoxb-bench", "bench-secret"
UPLOAD = "files.getUploadURLExternal"
SLOW_ANSWER = re.compile(r"The whole log of job|could not upload the log")
SLOW_S = 60.0  # a slow command: `logs <id> full` while Slack answers its upload with 429, Retry-After ~SLOW_S


Request = tuple[str, dict[str, str]]  # a signed body and its headers


async def send(to: list[tuple[str, Request]], per_s: float = math.inf) -> list[float]:
    """Each request's seconds to its answer, timed by `bench.ack_client` in its own process; the i-th is sent to its
    URL at i / `per_s` s (all at once: a burst)."""
    return [seconds for _, seconds in await send_timed(to, per_s)]


async def send_timed(to: list[tuple[str, Request]], per_s: float = math.inf) -> list[tuple[float, float]]:
    """(answered at, by the wall clock; seconds to the answer) of each request."""
    client = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.ack_client",
        str(per_s),
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await client.communicate(json.dumps([(url, body, headers) for url, (body, headers) in to]).encode())
    if client.returncode != 0:
        raise RuntimeError(f"bench.ack_client failed (exit status {client.returncode})")
    return [(float(at), float(seconds)) for at, seconds in json.loads(out)]


async def _interleaved(urls: list[str], requests: list[Request], per_s: float) -> list[list[float]]:
    """The i-th request to `urls[i % n]`, each server `per_s` a second: every server's times, measured side by side
    (a machine's passing slowness falls on all of them alike, not on whichever ran at that moment)."""
    n = len(urls)
    times = await send([(urls[i % n], r) for i, r in enumerate(requests)], per_s * n)
    return [times[k::n] for k in range(n)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def _server(argv: list[str], port: int, cwd: Path) -> AsyncIterator[str]:
    """A server in its own process (as in production: the load generator and the stand-in don't share its CPU)."""
    env = os.environ | {"SLACK_BOT_TOKEN": BOT, "SLACK_SIGNING_SECRET": SECRET}
    env.pop("SLACK_APP_TOKEN", None)
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        for _ in range(300):  # up to 30 s to start listening
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        yield f"http://127.0.0.1:{port}/slack/events"
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()


async def ack_latency(burst: int, stream: int, per_s: float = 20.0) -> list[Row]:
    """Acks of a steady stream of commands (`stream` of them, `per_s` a second: far more than a team types, each
    answered on its own) against the goal, and of bursts of `burst` sent at once (each waits for those ahead of
    it on one core: a throughput figure). Bare Bolt runs beside trainbot the whole time: each stream's requests
    alternate between them, and the bursts take turns."""
    texts = ["list", "status", "llm gpu=0 out=output/dry --dry-run", "help"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # the launched job (50 s) runs through the busy stream (30 s at most once its card is out)
        config = fake_config(root, gpus=2, step_s=0.5, max_steps=100)
        async with SlackStandIn(bot_token=BOT, signing_secret=SECRET, rate_limits={"*": None}) as slack:

            def bodies(n: int, launch: bool = False) -> list[Request]:
                out = [
                    slack.signed_slash_command(
                        text=texts[i % len(texts)], user_id=f"U{i:04d}", channel_id=DEFAULT_CHANNEL
                    )
                    for i in range(n - 1)
                ]
                last = "llm gpu=0 out=output/launch" if launch else "list"
                return [*out, slack.signed_slash_command(text=last, user_id="ULAUNCH", channel_id=DEFAULT_CHANNEL)]

            def bolt(mode: str, port: int) -> list[str]:
                return [sys.executable, "-m", "bench.bare_bolt", str(port), slack.api_url, mode]

            ports = [_free_port() for _ in range(3)]
            trainbot = [
                str(Path(sys.executable).parent / "trainbot"),
                "--config",
                str(root / "trainbot.toml"),
                "serve",
                "--slack-api-url",
                slack.api_url,
                "--slack-port",
                str(ports[2]),
                "--port",
                "0",
            ]
            rounds = 5
            bare: dict[str, list[float]] = {"burst": []}
            ours: dict[str, list[float]] = {"burst": []}
            async with (
                _server(bolt("inline", ports[0]), ports[0], REPO) as inline,
                _server(bolt("default", ports[1]), ports[1], REPO) as polled,
                _server(trainbot, ports[2], root) as url,
            ):
                await _interleaved([inline, polled, url], bodies(15), per_s)  # warm-up
                bare["stream"], bare["stream default"], ours["stream"] = await _interleaved(
                    [inline, polled, url], bodies(3 * stream), per_s
                )
                for i in range(rounds):
                    bare["burst"] += await send([(inline, r) for r in bodies(burst)])
                    due = len(slack.responses()) + burst
                    last_round = await send_timed([(url, r) for r in bodies(burst, launch=i == rounds - 1)])
                    ours["burst"] += [seconds for _, seconds in last_round]
                    await slack.wait_for(
                        lambda: len(slack.responses()) >= due,  # noqa: B023 (awaited here)
                        30,
                        what="the burst's answers",
                    )  # its work done before the next bare burst
                acked = last_round[-1][0]  # the launch's ack, by the wall clock the stand-in stamps calls with
                card = await slack.wait_for(
                    lambda: [c for c in slack.calls("chat.postMessage") if "ULAUNCH" in str(c.params)],
                    30,
                    what="the job card",
                )
                to_card = card[0].time - acked
                job_id = _launched_job(slack)
                slow = await _slow_commands(slack, url, job_id, 5)
                bare["busy"], ours["busy"] = await _interleaved([inline, url], bodies(2 * stream), per_s)
                answered_slow = [r for r in slack.responses() if SLOW_ANSWER.search(str(r.body))]
                still = slow - len(answered_slow)
                store = await JobStore.open(config.db_path)
                try:

                    async def ended() -> bool:
                        job = await store.get(job_id)
                        return job is not None and job.state.is_terminal

                    await slack.wait_for(ended, 90, what="the launched job's end")  # no job outlives the bench
                finally:
                    await store.close()

    def ms(values: list[float]) -> str:
        return f"p50 {pct(values, 50) * 1e3:.1f} / p99 {pct(values, 99) * 1e3:.1f} / max {max(values) * 1e3:.1f} ms"

    def against_bare(kind: str, figure: str, extra: str = "", *, absolute: bool = True, valid: bool = True) -> Row:
        values, base = ours[kind], bare[kind]
        ratio = pct(values, 99) / pct(base, 99)
        met = valid and ratio <= 1.2 and (not absolute or pct(values, 99) < 0.050)
        return Row(
            figure,
            ms(values) + extra,
            f"bare Bolt, same stream {ms(base)}",
            ratio,
            "p99 < 50 ms and <= 1.2x bare" if absolute else "p99 <= 1.2x bare",
            met,
        )

    commands = "signed /train (list, status, dry run, help)"
    return [
        against_bare(
            "stream",
            f"ack latency, {stream} {commands} at {per_s:g}/s, trainbot serve (Slack + HTTP "
            "API, one process), interleaved with as many to bare Bolt",
        ),
        Row(
            "ack latency, the same stream to bare Bolt in its default mode (the listener in a task, its ack "
            "polled every 10 ms)",
            ms(bare["stream default"]),
            f"bare Bolt answering when the listener returns: {ms(bare['stream'])}",
            pct(bare["stream default"], 50) / pct(bare["stream"], 50),
        ),
        against_bare(
            "busy",
            f"ack latency, {stream} more while {slow} slow commands are in flight (`logs <id> "
            f"full`, its upload rate-limited for ~{SLOW_S:g} s) and a job runs",
            f" ({still} slow still unanswered at the end)",
            valid=still == slow,
        ),
        against_bare(
            "burst",
            f"ack latency, {rounds} bursts of {burst} {commands} sent at once (one launch), "
            "taking turns with bare Bolt's: each waits for those ahead of it",
            absolute=False,
        ),
        Row("ack to job card in Slack (the launch)", f"{to_card * 1e3:.0f} ms", "", None, "", None),
    ]


def _launched_job(slack: SlackStandIn) -> str:
    cards = [
        m["metadata"]["event_payload"]
        for m in slack.messages(DEFAULT_CHANNEL, top_level=True)
        if (m.get("metadata") or {}).get("event_payload", {}).get("topic") == "job_created"
    ]
    return str(cards[0]["job_id"])


async def _slow_commands(slack: SlackStandIn, url: str, job_id: str, n: int) -> int:
    """`n` users ask for the whole log of `job_id` while Slack rate-limits uploads: each answer waits for the
    Retry-After (~SLOW_S) before its one retry. Returns once they are in flight (acked, their uploads refused)."""
    slack.set_rate_limit(UPLOAD, (1, SLOW_S))
    await slack.web_client().files_getUploadURLExternal(filename="other.log", length=1)  # takes the one call there is
    await send(
        [
            (
                url,
                slack.signed_slash_command(text=f"logs {job_id} full", user_id=f"USLOW{i}", channel_id=DEFAULT_CHANNEL),
            )
            for i in range(n)
        ]
    )
    running = min(n, 4)  # [slack] commands_at_once: the others wait for a slot, acked and unanswered
    await slack.wait_for(lambda: len(slack.rate_limited(UPLOAD)) >= running, 10, what="the slow uploads")
    return n
