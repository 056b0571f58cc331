"""Figures about the Slack front end, against the Slack stand-in of tests/ on 127.0.0.1: what an idle bot costs,
and the Slack budget of a busy channel (calls, 429s, how stale a card gets). Ack latency: bench/ack_figures.py."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.ack_figures import BOT, SECRET, send
from bench.common import Row, fake_config
from bot.slack.bot import SlackBot
from storage.models import JobState
from tests.slack_signing import DEFAULT_CHANNEL
from tests.slack_standin import SlackStandIn

STEP = re.compile(r"step (\d+)/")


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
                await send([(bot.url, body) for body in bodies])
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
