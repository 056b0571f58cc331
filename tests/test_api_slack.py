"""One process, one runtime: a job created over HTTP is announced in `[http] notify_channel` and stopped from Slack."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import requests

from tests.api_env import start_serve
from tests.slack_env import APP, BOT, CH, fake_config, topics, wait_card
from tests.slack_signing import DEFAULT_USER
from tests.slack_standin import SlackStandIn


async def test_a_job_created_over_http_gets_a_card_and_slack_stops_it(slack: SlackStandIn, tmp_path: Path) -> None:
    fake_config(
        tmp_path, steps=2000, step_s=0.1, slack_api_url=slack.api_url, sections=f'[http]\nnotify_channel = "{CH}"\n'
    )
    env = {"SLACK_BOT_TOKEN": BOT, "SLACK_APP_TOKEN": APP, "TRAINBOT_API_TOKENS": f"tok-me={DEFAULT_USER}"}
    api = await asyncio.to_thread(start_serve, tmp_path, env)  # a thread: the stand-in runs in this loop
    try:
        await slack.wait_for_socket(30)

        def post(path: str, **kw: Any) -> requests.Response:
            return requests.post(api.url + path, headers={"Authorization": "Bearer tok-me"}, timeout=10, **kw)

        reply = await asyncio.to_thread(
            post, "/training/llm/jobs", json={"gpu_id": "0", "output_dir": "output/s", "start": True}
        )
        assert reply.status_code == 201, reply.text
        job_id = reply.json()["job_id"]
        card = await wait_card(slack, job_id, timeout=20)
        await slack.wait_for(lambda: "job_started" in topics(slack, card["ts"]), 20, what="the start in the thread")
        await slack.wait_for_ack(await slack.push_slash_command(f"stop {job_id}", user_id=DEFAULT_USER))

        def state() -> str:
            got = requests.get(
                f"{api.url}/training/jobs/{job_id}/status", headers={"Authorization": "Bearer tok-me"}, timeout=10
            )  # with tokens configured, a loopback request needs one too
            return str(got.json()["status"])

        async def stopped() -> bool:
            return await asyncio.to_thread(state) == "stopped"

        await slack.wait_for(stopped, 60, what="the job to stop")
        await slack.wait_for(lambda: "job_stopped" in topics(slack, card["ts"]), 20, what="the end notice")
    finally:
        assert await asyncio.to_thread(api.stop) == 0
    assert re.search(r"serving Slack in socket mode", api.log)
