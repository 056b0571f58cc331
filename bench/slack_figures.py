"""Figures about the Slack front end, against the Slack stand-in of tests/ on 127.0.0.1: ack latency beside a bare
Bolt app, and the Slack budget of a busy channel (calls, 429s, how stale a card gets)."""

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
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psutil

from bench.common import REPO, Row, fake_config, pct
from bot.slack.bot import SlackBot
from storage.jobs import JobStore
from storage.models import JobState
from tests.slack_signing import DEFAULT_CHANNEL
from tests.slack_standin import SlackStandIn

BOT, SECRET = "xoxb-bench", "bench-secret"
STEP = re.compile(r"step (\d+)/")
UPLOAD = "files.getUploadURLExternal"
SLOW_ANSWER = re.compile(r"The whole log of job|could not upload the log")
SLOW_S = 60.0  # a slow command: `logs <id> full` while Slack answers its upload with 429, Retry-After ~SLOW_S


Request = tuple[str, dict[str, str]]  # a signed body and its headers


async def _send(to: list[tuple[str, Request]], per_s: float = math.inf) -> list[float]:
    """Each request's seconds to its answer, timed by `bench.ack_client` in its own process; the i-th is sent to its
    URL at i / `per_s` s (all at once: a burst)."""
    return [seconds for _, seconds in await _send_timed(to, per_s)]


async def _send_timed(to: list[tuple[str, Request]], per_s: float = math.inf) -> list[tuple[float, float]]:
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
    times = await _send([(urls[i % n], r) for i, r in enumerate(requests)], per_s * n)
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
                    bare["burst"] += await _send([(inline, r) for r in bodies(burst)])
                    due = len(slack.responses()) + burst
                    last_round = await _send_timed([(url, r) for r in bodies(burst, launch=i == rounds - 1)])
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
    await _send(
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


async def idle_cost(window_s: float) -> list[Row]:
    """A whole bot (runtime, notifier, cards, the HTTP front end) with no job and an empty outbox: its CPU time.

    Measured as this process's own CPU time (psutil cpu_times, user + system) per second of wall time, which a
    busy shared machine barely changes; the stand-in shares the process and idles too."""
    me = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        config = fake_config(Path(tmp), gpus=2, step_s=1.0, max_steps=10)
        async with SlackStandIn(bot_token=BOT, signing_secret=SECRET) as slack:
            bot = SlackBot(
                config,
                api_url=slack.api_url,
                mode="http",
                host="127.0.0.1",
                port=0,
                bot_token=BOT,
                signing_secret=SECRET,
            )
            async with bot:
                await asyncio.sleep(1.0)  # past the start-up round of every loop
                before = [loop.wakeups for loop in bot.loops]
                t0, c0 = time.monotonic(), sum(me.cpu_times()[:2])
                await asyncio.sleep(window_s)
                cpu = (sum(me.cpu_times()[:2]) - c0) / (time.monotonic() - t0)
                woke = sum(loop.wakeups for loop in bot.loops) - sum(before)
    return [
        Row(
            "idle bot (no job, empty outbox): CPU",
            f"{100 * cpu:.3f}% of a core over {window_s:g} s (CPU time of the bot process), {woke} loop wake-ups",
            f"safety poll {config.safety_poll_seconds:g} s",
            None,
            "< 0.2% of a core",
            cpu < 0.002,
        )
    ]


async def idle_serve_cost(window_s: float) -> list[Row]:
    """The real `trainbot serve` with every front end up (Slack in HTTP mode, the HTTP API, the web page), no job
    and an empty outbox: the CPU time of its own process (psutil), after its start-up."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = fake_config(root, gpus=2, step_s=1.0, max_steps=10)
        async with SlackStandIn(bot_token=BOT, signing_secret=SECRET) as slack:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TRAINBOT_"))}
            proc = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "trainbot"),
                "--config",
                str(root / "trainbot.toml"),
                "serve",
                "--port",
                "0",
                "--slack-port",
                "0",
                "--slack-api-url",
                slack.api_url,
                cwd=root,
                env=env | {"SLACK_BOT_TOKEN": BOT, "SLACK_SIGNING_SECRET": SECRET},
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            assert proc.stderr is not None
            try:
                async with asyncio.timeout(60):
                    while b"HTTP API on" not in await proc.stderr.readline():
                        pass
                drain = asyncio.create_task(proc.stderr.read())  # a full pipe would stall it
                await asyncio.sleep(3.0)  # past the start-up round of every loop
                me = psutil.Process(proc.pid)
                t0, c0 = time.monotonic(), sum(me.cpu_times()[:2])
                await asyncio.sleep(window_s)
                cpu = (sum(me.cpu_times()[:2]) - c0) / (time.monotonic() - t0)
            finally:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 30)
            drain.cancel()
    return [
        Row(
            "idle `trainbot serve` (Slack HTTP mode + HTTP API + web page, no job): CPU",
            f"{100 * cpu:.3f}% of a core over {window_s:g} s (CPU time of the serve process)",
            f"safety poll {config.safety_poll_seconds:g} s",
            None,
            "< 0.2% of a core",
            cpu < 0.002,
        )
    ]


async def slack_budget(jobs: int, minutes: float) -> list[Row]:
    """Progress at the fixed recipe's pace on an H100 (a logged step every ~30 s), staggered across the jobs."""
    window = minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        step_s = 6.0
        config = fake_config(Path(tmp), gpus=jobs, step_s=step_s, max_steps=int(window / step_s) + 30, logging_steps=5)
        async with SlackStandIn(bot_token=BOT, signing_secret=SECRET) as slack:
            bot = SlackBot(
                config,
                api_url=slack.api_url,
                mode="http",
                host="127.0.0.1",
                port=0,
                bot_token=BOT,
                signing_secret=SECRET,
            )
            async with bot:
                store = bot.runtime.store
                bodies = [
                    slack.signed_slash_command(
                        text=f"llm gpu={i} out=output/j{i}", user_id=f"U{i:03d}", channel_id=DEFAULT_CHANNEL
                    )
                    for i in range(jobs)
                ]
                await _send([(bot.url, body) for body in bodies])
                first_seen: dict[str, dict[int, float]] = {}
                worst, t_end = 0.0, time.monotonic() + window
                while time.monotonic() < t_end:
                    now = time.monotonic()
                    for job in await store.active():
                        step = job.progress.step
                        card = await store.slack_card(job.id)
                        if step is None or card is None:
                            continue
                        seen = first_seen.setdefault(job.id, {})
                        seen.setdefault(step, now)
                        shown = _card_step(slack, card.ts)
                        newer = [t for s, t in seen.items() if s > shown]
                        if newer:
                            worst = max(worst, now - min(newer))
                    await asyncio.sleep(0.25)
                calls = len([c for c in slack.calls() if c.method not in ("upload", "response_url")])
                hits = slack.rate_limited()
                for job in await store.active():
                    await bot.runtime.supervisor.stop(job.id, by="bench")
                for _ in range(300):  # up to 60 s for the stops to land
                    if not await store.active():
                        break
                    await asyncio.sleep(0.2)
                ended = [j for j in await store.list_jobs() if j.state is JobState.STOPPED]
    bursts = _bursts([h.time for h in hits])
    per_min = calls / minutes
    return [
        Row(
            f"Slack budget: {jobs} jobs in one channel for {minutes:g} min",
            f"{calls} Web API calls ({per_min:.0f}/min), {len(hits)} x 429 in {bursts} burst(s)",
            "stand-in at Slack's documented limits: chat.postMessage 1/s per channel (bursts of 3), chat.update "
            "50 in any minute",
            None,
            "0 x 429",
            not hits,
        ),
        Row(
            "Slack budget: worst card staleness",
            f"{worst:.1f} s ({len(ended)}/{jobs} cards' jobs stopped)",
            f"card interval {config.slack.card_interval_s:g} s",
            None,
            "<= 10 s",
            worst <= 10.0,
        ),
    ]


def _card_step(slack: SlackStandIn, ts: str) -> int:
    message = slack.message(DEFAULT_CHANNEL, ts) or {}
    found = STEP.findall(str(message.get("blocks") or message.get("text") or ""))
    return int(found[-1]) if found else 0


def _bursts(times: list[float], gap: float = 5.0) -> int:
    """429s closer than `gap` seconds belong to one burst."""
    count, last = 0, None
    for t in sorted(times):
        if last is None or t - last > gap:
            count += 1
        last = t
    return count
