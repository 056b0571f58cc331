"""A job's page in a real browser (headless chromium) against `trainbot serve` (fake swift): every logged metric as
a small chart with axis titles and whole steps, a failed job's cause in words with its log's end in view, the button
that resumes from a checkpoint saying so, and what an action said kept neither in the URL nor past the change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
from selenium.webdriver import Chrome

from tests.api_env import serving
from tests.browser import attr, browser, click, console_errors, sign_in, text_of
from tests.slack_env import fake_config
from tests.waiting import wait_until_sync

TOKENS = {"TRAINBOT_API_TOKENS": "tok-ann=UANN"}
ANN = {"Authorization": "Bearer tok-ann"}
SIGNED_ONLY = "[http]\nallow_anonymous_loopback = false\n"
VLM = "[vlm]\nmax_steps = 24\nsave_steps = 8\neval_steps = 6\nlogging_steps = 1\n"


def _status(url: str, job: str) -> dict[str, object]:
    reply = requests.get(f"{url}/training/jobs/{job}/status", headers=ANN, timeout=10)
    assert reply.status_code == 200, reply.text
    body: dict[str, object] = reply.json()
    return body


def _charts(driver: Chrome) -> list[dict[str, object]]:
    """Each chart drawn: its caption, axis titles, legend and the step labels on its x axis."""
    return list(
        driver.execute_script("""
        return [...document.querySelectorAll('#charts figure.metric')].filter(f => f.querySelector('canvas'))
          .map(f => ({title: f.querySelector('figcaption').textContent,
                      axes: f.querySelector('.chart').dataset.axes.split('|'),
                      legend: f.querySelector('.u-legend').textContent,
                      steps: f.querySelector('.chart').dataset.steps}));""")
    )


def test_every_logged_metric_is_a_small_chart_with_axis_titles_and_whole_steps(tmp_path: Path) -> None:
    fake_config(tmp_path, step_s=0.05, sections=VLM + SIGNED_ONLY, env={"FAKE_SWIFT_MEMORY_GIB": "3.5"})
    with serving(tmp_path, TOKENS) as api, browser(tmp_path / "chrome") as driver:
        job = requests.post(
            f"{api.url}/training/jobs",
            headers=ANN,
            timeout=10,
            json={"gpu_id": "0", "output_dir": "output/metrics", "start": True},
        ).json()["job_id"]
        wait_until_sync(lambda: _status(api.url, job)["status"] == "succeeded", 60, "the job to end")
        sign_in(driver, api.url, "tok-ann")
        driver.get(f"{api.url}/jobs/{job}")
        wait_until_sync(lambda: len(_charts(driver)) >= 6, 30, "the metrics' charts")
        charts = {c["title"]: c for c in _charts(driver)}
        assert list(charts) == ["Loss", "Learning rate", "Gradient norm", "Token accuracy", "GPU memory", "Speed"]
        assert charts["Loss"]["axes"] == ["step", "loss"] and charts["GPU memory"]["axes"] == ["step", "GiB"]
        assert "train loss" in str(charts["Loss"]["legend"]) and "eval loss" in str(charts["Loss"]["legend"])
        for title, chart in charts.items():
            assert len(chart["axes"]) == 2 and all(chart["axes"]), title  # both axes titled
            assert "--" not in str(chart["legend"]), title  # names, not a value under no cursor
            steps = str(chart["steps"]).split()
            assert steps and all(s.isdigit() for s in steps), (title, steps)  # whole steps only
        assert attr(driver, "#chart", "data-points") == "24"

        click(driver, "#chart ~ details.points summary")  # the loss chart's text alternative
        wait_until_sync(lambda: text_of(driver, "#chart ~ details.points table"), 10, "the points as a table")
        first = driver.execute_script(
            "return [...document.querySelectorAll('#chart ~ details.points tbody tr')].map(r => r.textContent)"
        )
        assert len(first) == 24 and first[0].startswith("1") and first[5].startswith("6")
        assert console_errors(driver) == []


def _visible_in(driver: Chrome, box: str, text: str) -> bool:
    """Is the line holding `text` inside `box`'s visible (scrolled) area, without scrolling?"""
    return bool(
        driver.execute_script(
            """
        const box = document.querySelector(arguments[0]);
        if (!box) { return false; }
        const walker = document.createTreeWalker(box, NodeFilter.SHOW_TEXT);
        while (walker.nextNode()) {
          const node = walker.currentNode, at = node.data.indexOf(arguments[1]);
          if (at < 0) { continue; }
          const range = document.createRange();
          range.setStart(node, at);
          range.setEnd(node, at + arguments[1].length);
          const r = range.getBoundingClientRect(), b = box.getBoundingClientRect();
          return r.height > 0 && r.top >= b.top - 1 && r.bottom <= b.bottom + 1;
        }
        return false;""",
            box,
            text,
        )
    )


def test_a_failed_job_says_its_cause_in_words_with_the_end_of_its_log_in_view(tmp_path: Path) -> None:
    fake_config(tmp_path, sections=SIGNED_ONLY)
    (tmp_path / "fake-swift").write_text(  # a swift that loads for a while, then runs out of GPU memory
        '#!/bin/sh\nfor i in $(seq 1 60); do echo "loading shard $i of 60"; done\n'
        "echo 'torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB' >&2\nexit 1\n"
    )
    with serving(tmp_path, TOKENS) as api, browser(tmp_path / "chrome") as driver:
        job = requests.post(
            f"{api.url}/training/llm/jobs",
            headers=ANN,
            timeout=10,
            json={"gpu_id": "0", "output_dir": "output/oom", "start": True},
        ).json()["job_id"]
        wait_until_sync(lambda: _status(api.url, job)["status"] == "failed", 60, "the job to fail")
        sign_in(driver, api.url, "tok-ann")
        driver.get(f"{api.url}/jobs/{job}")
        assert (
            text_of(driver, "#failure-title")
            == "Why it failed: ran out of GPU memory (CUDA OOM, tried to allocate 2.00 GiB)"
        )  # bot/words/failures
        assert "cuda_oom" not in driver.page_source
        assert _visible_in(driver, ".failure .tail", "CUDA out of memory")  # the tail opens at its end
        assert not _visible_in(driver, ".failure .tail", "loading shard 41 of 60")  # its top is scrolled away
        wait_until_sync(lambda: "CUDA out of memory" in text_of(driver, "#log"), 30, "the live log")
        wait_until_sync(lambda: _visible_in(driver, "#log", "CUDA out of memory"), 10, "the log's end in view")
        driver.save_screenshot(str(tmp_path / "failed.png"))


def test_start_on_a_stopped_job_says_it_resumes_from_its_checkpoint_and_said_words_leave(tmp_path: Path) -> None:
    fake_config(tmp_path, steps=400, save_steps=5, step_s=0.05, sections=SIGNED_ONLY, env={"FAKE_SWIFT_STOP_S": "3"})
    with serving(tmp_path, TOKENS) as api, browser(tmp_path / "chrome") as driver:
        job = requests.post(
            f"{api.url}/training/llm/jobs",
            headers=ANN,
            timeout=10,
            json={"gpu_id": "0", "output_dir": "output/resume", "start": True},
        ).json()["job_id"]
        wait_until_sync(lambda: int(str(_status(api.url, job)["step"] or 0)) >= 12, 60, "two checkpoints")
        sign_in(driver, api.url, "tok-ann")
        driver.get(f"{api.url}/jobs/{job}")
        click(driver, "#do-stop")
        wait_until_sync(lambda: "/confirm" in driver.current_url, 20, "the confirm page")
        click(driver, "#confirm")
        wait_until_sync(lambda: driver.current_url.endswith(f"/jobs/{job}"), 20, "back on the job's page")
        assert "said" not in driver.current_url  # what the stop said is not in the URL
        said = text_of(driver, "#said")
        assert said.startswith((f"Stopping job {job}", f"Job {job} is stopped")), said
        wait_until_sync(lambda: text_of(driver, "#state") == "stopped", 60, "stopped")
        wait_until_sync(lambda: text_of(driver, "#said") == "", 10, "“Stopping job…” to go once stopped")
        wait_until_sync(
            lambda: text_of(driver, "#announce") == f"Job {job} is now stopped.",
            10,
            "the change told through the polite live region",
        )
        driver.refresh()
        assert text_of(driver, "#said") == ""  # nor back on a reload

        checkpoint = str(
            requests.get(f"{api.url}/training/jobs/{job}", headers=ANN, timeout=10).json()["last_checkpoint"]
        )
        n = checkpoint.rsplit("-", 1)[1]
        wait_until_sync(lambda: text_of(driver, "#do-start"), 20, "the start button")
        assert text_of(driver, "#do-start") == f"Resume from checkpoint {n}"
        click(driver, "#do-start")
        wait_until_sync(lambda: "/confirm" in driver.current_url, 20, "the confirm page")
        h1 = text_of(driver, "h1")  # the job by its name, its id beside it
        assert h1.startswith("Resume job ") and h1.endswith(f"({job}) from checkpoint {n}?"), h1
        assert f"from step {n}" in text_of(driver, "#what-it-does") and text_of(driver, "#confirm") == "Yes, resume it"
        click(driver, "#confirm")
        wait_until_sync(lambda: _status(api.url, job)["status"] in ("queued", "starting", "running"), 20, "resumed")

        def metrics() -> dict[str, Any]:
            reply = requests.get(f"{api.url}/training/jobs/{job}/metrics", headers=ANN, timeout=10)
            return dict(reply.json())

        wait_until_sync(
            lambda: len(metrics()["run_dirs"]) == 2 and metrics()["series"]["loss"][-1][0] > int(n) + 2,
            30,
            "the resumed run's first steps",
        )
        requests.post(f"{api.url}/training/jobs/{job}/stop", headers=ANN, timeout=10)
        wait_until_sync(lambda: _status(api.url, job)["status"] == "stopped", 60, "stopped again")
        steps = [s for s, _ in metrics()["series"]["loss"]]
        events = requests.get(f"{api.url}/training/jobs/{job}", headers=ANN, timeout=10).json()["events"]
        assert steps[0] == 1 and steps == sorted(set(steps)) and int(n) + 1 in steps, (  # one curve, resumed from N
            n,
            steps,
            metrics()["run_dirs"],
            [e["message"] for e in events],
        )
        assert console_errors(driver) == []
