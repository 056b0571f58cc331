"""The App Home tab: a dashboard of running and queued jobs, recent finished ones, and the GPUs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.views import Block, context, mrkdwn
from bot.words import texts
from bot.words.format import SLACK
from runner import leases
from runner.gpus import GpuSnapshot
from runner.runtime import Runtime
from storage.models import Job

MAX_ACTIVE, MAX_RECENT = 30, 10  # a home view holds at most 100 blocks


def home_view(
    active: Sequence[Job], recent: Sequence[Job], snapshot: GpuSnapshot, holders: Mapping[str, str], now: float
) -> dict[str, Any]:
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": "trainbot: fine-tuning jobs"}},
        mrkdwn(f"*Running and queued* ({len(active)})"),
    ]
    if not active:
        blocks.append(context("Nothing running. Start a job with `/train llm gpu=0 out=output/my-run`."))
    for job in active[:MAX_ACTIVE]:
        blocks.append(mrkdwn(texts.job_line(job, SLACK)))
    if len(active) > MAX_ACTIVE:
        blocks.append(context(f"… and {len(active) - MAX_ACTIVE} more: `/train list active`"))
    blocks += [{"type": "divider"}, mrkdwn(f"*Recently finished* ({len(recent[:MAX_RECENT])})")]
    if not recent:
        blocks.append(context("No finished jobs yet."))
    for job in recent[:MAX_RECENT]:
        blocks.append(mrkdwn(texts.job_line(job, SLACK)))
    blocks += [{"type": "divider"}, mrkdwn("*GPUs*"), mrkdwn(texts.gpu_table(snapshot, dict(holders), SLACK))]
    taken = f" · GPUs probed {snapshot.taken_at:%H:%M:%S}" if snapshot.taken_at else ""
    blocks.append(context(f"Updated {dt.datetime.fromtimestamp(now):%Y-%m-%d %H:%M:%S}{taken} · `/train help`"))
    return {"type": "home", "blocks": blocks}


async def publish_home(client: AsyncWebClient, runtime: Runtime, user_id: str, now: float) -> None:
    active = await runtime.store.active()
    recent = [j for j in await runtime.store.list_jobs(limit=MAX_RECENT * 3) if j.state.is_terminal]
    view = home_view(active, recent, runtime.probe.snapshot(), leases.held(await runtime.store.holding()), now)
    await client.views_publish(user_id=user_id, view=view)
