"""Comparing runs: 3 VLM jobs that differ in their learning rate (and one in its LoRA rank), picked in the web
jobs table and compared in a real browser, with `/train compare` in the console (a real `trainbot console`) and
in Slack (the bot against the Slack stand-in, which keeps what is uploaded). Jobs run tests/fake_swift.py, whose
loss falls faster the higher the learning rate."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import requests

from tests.api_env import serving
from tests.browser import attr, browser, click, console_errors, sign_in, text_of
from tests.conftest import VENV_BIN
from tests.slack_env import (
    CH,
    answers,
    card_of,
    command,
    fake_config,
    job_ended,
    job_id_from_answer,
    running_bot,
)
from tests.slack_standin import SlackStandIn
from tests.waiting import wait_until_sync

VLM = "[vlm]\nmax_steps = 12\nsave_steps = 6\nlogging_steps = 1\n"
SIGNED_ONLY = "[http]\nallow_anonymous_loopback = false\n"
RATES = ("1e-4", "3e-4", "5e-5")


def _three_jobs(url: str) -> list[str]:
    ids = []
    for n, lr in enumerate(RATES):
        body = {
            "gpu_id": str(n),
            "output_dir": f"output/lr-{n}",
            "learning_rate": float(lr),
            "start": True,
            "lora_rank": 16 if n == 1 else 8,
        }
        reply = requests.post(
            f"{url}/training/jobs", json=body, headers={"Authorization": "Bearer tok-ann"}, timeout=10
        )
        assert reply.status_code == 201, reply.text
        ids.append(reply.json()["job_id"])
    for job in ids:
        wait_until_sync(
            lambda j=job: (
                requests.get(
                    f"{url}/training/jobs/{j}/status", timeout=10, headers={"Authorization": "Bearer tok-ann"}
                ).json()["status"]
                == "succeeded"
            ),
            60,
            f"job {job} to end",
        )
    return ids


def test_three_runs_picked_in_the_table_are_drawn_on_one_chart_with_what_differs(tmp_path: Path) -> None:
    fake_config(tmp_path, step_s=0.05, sections=VLM + SIGNED_ONLY)
    with serving(tmp_path, {"TRAINBOT_API_TOKENS": "tok-ann=UANN"}) as api, browser(tmp_path / "chrome") as driver:
        ids = _three_jobs(api.url)
        sign_in(driver, api.url, "tok-ann")
        for job in ids:
            click(driver, f"#job-{job} input.pick")
        assert text_of(driver, "#picked-count") == "3"
        click(driver, "#compare-button")
        wait_until_sync(lambda: "/compare?" in driver.current_url, 20, "the compare page")
        wait_until_sync(lambda: attr(driver, "#compare-chart", "data-runs"), 20, "the chart")
        assert attr(driver, "#compare-chart", "data-runs") == "3"
        legend = driver.execute_script(
            "return [...document.querySelectorAll('#compare-chart .u-legend .u-label')].map(e => e.textContent)"
        )
        # one colour a run: its loss, and its eval loss (swift evaluates at the last step), each named
        assert sorted(legend) == sorted([f"job {job} loss" for job in ids] + [f"job {job} eval loss" for job in ids])
        assert attr(driver, "#compare-chart", "data-series") == "6"
        assert attr(driver, "#compare-chart", "data-points") == "12"  # aligned by step: steps 1..12 once
        ticks = driver.execute_script("return [...document.querySelectorAll('#compare-chart canvas')].length")
        assert ticks >= 1

        differs = text_of(driver, "#differs")
        for want in ("learning_rate", "0.0001", "0.0003", "5e-05", "lora_rank", "16", "final loss", "ran for"):
            assert want in differs, (want, differs)
        assert "max_steps" not in differs and "model" not in differs  # the same in all: not a difference
        assert "the same in all 3" in text_of(driver, "#same")
        finals = driver.execute_script(
            "return [...document.querySelectorAll('#differs tr')].find(r => r.querySelector('th')"
            ".textContent === 'final loss').querySelectorAll('td').length"
        )
        assert finals == 3

        click(driver, "#compare-points summary")  # the chart's text alternative: its points as a table
        wait_until_sync(lambda: text_of(driver, "#compare-points table"), 10, "the points as a table")
        rows = driver.execute_script("return document.querySelectorAll('#compare-points tbody tr').length")
        assert rows == 12
        click(driver, "#log-scale")
        wait_until_sync(lambda: attr(driver, "#compare-chart", "data-log") == "true", 10, "the log scale")
        assert attr(driver, "#compare-chart", "data-series") == "6"
        driver.save_screenshot(str(tmp_path / "compare.png"))
        assert console_errors(driver) == []

        one = requests.get(
            f"{api.url}/compare",
            params={"job": ids[0]},
            cookies={"trainbot_session": driver.get_cookie("trainbot_session")["value"]},
            timeout=10,
        )  # type: ignore[index]
        assert one.status_code == 422 and "2 to 8" in one.text


def test_train_compare_in_the_console_prints_what_differs_and_saves_the_chart(tmp_path: Path) -> None:
    fake_config(tmp_path, step_s=0.02, sections=VLM)
    config = str(tmp_path / "trainbot.toml")
    typed = "".join(f"vlm gpu={n} out=output/c{n} lr={lr}\n" for n, lr in enumerate(RATES))
    made = subprocess.run(
        [str(VENV_BIN / "trainbot"), "--config", config, "console", "--wait"],
        input=typed,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=240,
        check=True,
    ).stdout
    ids = re.findall(r"Job ([a-z0-9]{5}) ", made)[:3]
    assert len(ids) == 3, made[-2000:]
    out = subprocess.run(
        [str(VENV_BIN / "trainbot"), "--config", config, "console"],
        input=f"compare {' '.join(ids)}\ncompare {ids[0]}\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=True,
    ).stdout
    assert f"Comparing 3 jobs: {', '.join(ids)}" in out, out
    table = out[out.index("Comparing 3 jobs") : out.index("⚠️")]
    row = next(line for line in table.splitlines() if line.startswith("learning_rate"))
    assert row.split()[1:] == ["0.0001", "0.0003", "5e-05"], row
    assert "final loss" in table and "`" not in table and "*" not in table  # plain text, no mrkdwn
    chart = tmp_path / ".trainbot" / "charts" / f"compare-{'-'.join(ids)}.png"
    assert f"The chart: {chart}" in out and chart.read_bytes().startswith(b"\x89PNG")
    assert "takes 2 to 8 job ids (1 given)" in out  # one id alone


async def test_train_compare_in_slack_posts_the_overlay_in_the_first_jobs_thread(
    slack: SlackStandIn, tmp_path: Path
) -> None:
    async with running_bot(fake_config(tmp_path, step_s=0.02, sections=VLM), slack) as bot:
        ids = []
        for n, lr in enumerate(RATES):
            await command(slack, bot, f"vlm gpu={n} out=output/s{n} lr={lr}")
            ids.append(await job_id_from_answer(slack, n))
        for job in ids:
            await slack.wait_for(lambda j=job: job_ended(bot, j), 60, what=f"job {job} to end")
        card = await slack.wait_for(lambda: card_of(slack, ids[0]), 10, what="the first job's card")
        before = len(answers(slack))
        await command(slack, bot, f"compare {' '.join(ids)}")
        await slack.wait_for(lambda: len(answers(slack)) > before, 30, what="the answer to compare")
        said = answers(slack)[before]
        assert "chart" in said and f"job `{ids[0]}`'s thread" in said, said
        [upload] = [u for u in slack.uploads(completed=True) if u.filename.startswith("compare-")]
        assert upload.filename == f"compare-{'-'.join(ids)}.png" and upload.channel == CH
        assert upload.thread_ts == card["ts"]
        assert upload.content is not None and upload.content.startswith(b"\x89PNG")
        comment = upload.initial_comment or ""
        assert "learning_rate" in comment and "5e-05" in comment and "```" in comment and "<@U0ALICE>" in comment

        await command(slack, bot, f"compare {ids[0]} zzzzz")
        await slack.wait_for(lambda: len(answers(slack)) > before + 1, 30, what="the answer to a bad compare")
        assert "no job `zzzzz`" in answers(slack)[before + 1]
