"""The history in a real browser (headless chromium) against `trainbot serve` as a real process: every job reachable
by older/newer links, a count, search, sort, names escaped, a job's facts, and a note added from its page.

The jobs are written straight through the store before `serve` starts (as bench/ fills its stores): ended jobs
with start and end times and losses, so the pages have history to show.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import requests
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from runner.config import Config
from storage.failure_facts import CudaOom, JobFailure
from storage.jobs import JobStore
from storage.models import ExportState, Job, JobState, Kind, Progress
from tests.api_env import serving
from tests.browser import browser, click, console_errors, sign_in, text_of
from tests.slack_env import fake_config
from tests.waiting import wait_until_sync

TOKENS = {"TRAINBOT_API_TOKENS": "tok-ann=UANN,tok-bob=UBOB"}
SIGNED_ONLY = "[http]\nallow_anonymous_loopback = false\n"
HOSTILE_NAME = "<img src=x onerror=alert(1)> & “sweep” 训练"


def history(config: Config, n: int, **named: Job) -> list[Job]:
    """`n` ended jobs, oldest first (one a minute), written through the store; `named`: more, made last."""

    async def fill() -> list[Job]:
        store = await JobStore.open(config.db_path)
        made = []
        try:
            for i in range(n):
                t = 1_700_000_000.0 + 60 * i
                made.append(
                    await store.create(
                        Job(
                            id="",
                            kind=Kind.LLM if i % 3 else Kind.VLM,
                            state=JobState.SUCCEEDED,
                            output_dir=str(config.output_root / f"run-{i:04d}"),
                            gpus=("0", "1") if i % 2 else ("0",),
                            argv=("swift", "sft"),
                            user_id="UANN" if i % 4 else "UBOB",
                            started_at=t,
                            finished_at=t + 30 + i,
                            progress=Progress(step=10, max_steps=10, loss=round(2.0 - i / (n + 1), 4)),
                        )
                    )
                )
            for job in named.values():
                made.append(await store.create(job))
        finally:
            await store.close()
        return made

    return asyncio.run(fill())


def row_ids(driver: Chrome) -> list[str]:
    return [
        str(i)
        for i in driver.execute_script(
            "return [...document.querySelectorAll('#rows tr[id^=job-]')].map(r => r.id.slice(4));"
        )
    ]


def go(driver: Chrome, rel: str) -> None:
    """Follow the page's `rel` link and wait for the page it leads to."""
    href = driver.execute_script(
        "const a = document.querySelector(arguments[0]); return a ? a.href : null;", f"a[rel={rel}]"
    )
    assert href, f"no rel={rel} link on {driver.current_url}"
    click(driver, f"a[rel={rel}]")
    wait_until_sync(
        lambda: driver.current_url == href and driver.execute_script("return document.readyState") == "complete",
        20,
        f"the {rel} page",
    )


def test_the_oldest_of_2500_jobs_is_reached_by_older_links_and_newer_links_lead_back(tmp_path: Path) -> None:
    config = fake_config(tmp_path, sections=SIGNED_ONLY)
    made = history(config, 2500)
    with serving(tmp_path, TOKENS) as api, browser(tmp_path / "chrome") as driver:
        sign_in(driver, api.url, "tok-ann")
        assert text_of(driver, "#count") == "2,500 jobs"
        assert row_ids(driver) == [j.id for j in made[::-1][:50]] and not driver.find_elements(
            By.CSS_SELECTOR, "a[rel=prev]"
        )
        seen = row_ids(driver)
        pages = 1
        while driver.find_elements(By.CSS_SELECTOR, "a[rel=next]"):
            go(driver, "next")
            seen += row_ids(driver)
            pages += 1
        assert pages == 50 and seen == [j.id for j in made[::-1]]  # every job once, newest to oldest
        assert row_ids(driver)[-1] == made[0].id
        driver.save_screenshot(str(tmp_path / "oldest-page.png"))
        go(driver, "prev")
        assert row_ids(driver) == [j.id for j in made[50:100][::-1]]
        assert console_errors(driver) == []


def test_search_sort_my_jobs_and_a_named_job_page_with_its_facts_and_note(tmp_path: Path) -> None:
    config = fake_config(tmp_path, sections=SIGNED_ONLY)
    out = config.output_root
    named = Job(
        id="",
        kind=Kind.VLM,
        state=JobState.FAILED,
        output_dir=str(out / "vl-1"),
        gpus=("0", "1"),
        argv=("swift", "sft"),
        user_id="UANN",
        name=HOSTILE_NAME,
        started_at=1_750_000_000.0,
        finished_at=1_750_000_000.0 + 5400,
        failure=JobFailure(CudaOom("2.00 GiB")),
        overrides={"lora_rank": "16", "learning_rate": "0.0001"},
        export_state=ExportState.EXPORTED,
        export_dir=str(out / "vl-1" / "checkpoint-9-merged"),
        progress=Progress(step=9, max_steps=10, loss=0.4321, eval_loss=0.5678),
    )
    made = history(config, 120, named=named)
    job = made[-1]
    with serving(tmp_path, TOKENS) as api, browser(tmp_path / "chrome") as driver:
        sign_in(driver, api.url, "tok-bob")
        search = driver.find_element(By.NAME, "q")
        search.send_keys("训练")  # part of the name, typed into the search field
        search.submit()
        wait_until_sync(lambda: "q=" in driver.current_url, 20, "the search's page")
        assert row_ids(driver) == [job.id] and text_of(driver, "#count") == "1 job"
        row = driver.find_element(By.ID, f"job-{job.id}")
        assert row.find_element(By.CSS_SELECTOR, "a.name").text == HOSTILE_NAME  # as typed: text, not markup
        assert not row.find_elements(By.TAG_NAME, "img") and job.id in row.text
        assert "ran out of GPU memory" in row.text and "📦 exported" in row.text and "3.00 GPU-h" in row.text
        driver.get(f"{api.url}/?q=RUN-01")  # folder and any case: run-0100 .. run-0119
        assert sorted(row_ids(driver)) == sorted(j.id for j in made[100:120])

        driver.get(f"{api.url}/?sort=loss")  # the lowest final loss first
        by_loss = sorted(made, key=lambda j: (j.progress.loss, -j.created_at))
        assert row_ids(driver) == [j.id for j in by_loss[:50]]
        click(driver, "#mine")  # bob's jobs: every fourth, and still by loss
        wait_until_sync(lambda: "owner=UBOB" in driver.current_url, 20, "my jobs")
        assert row_ids(driver) == [j.id for j in by_loss if j.user_id == "UBOB"][:50]

        driver.get(f"{api.url}/jobs/{job.id}")
        assert driver.title.startswith(f"{HOSTILE_NAME} · {job.id}")
        assert text_of(driver, "#job-name") == HOSTILE_NAME and not driver.find_elements(By.CSS_SELECTOR, "#panel img")
        facts = dict(
            driver.execute_script(
                "return [...document.querySelectorAll('#facts tr')]"
                ".map(r => [r.cells[0].textContent, r.cells[1].textContent]);"
            )
        )
        merged = out / "vl-1" / "checkpoint-9-merged"
        assert facts | {"Started": "", "Ended": ""} == {
            "Started": "",
            "Ended": "",
            "Duration": "1h 30m",
            "GPU-hours": "3.00",
            "Final train loss": "0.4321",
            "Final eval loss": "0.5678",
            "Exported": f"yes, to {merged}",
        }
        assert "lora_rank" in text_of(driver, "#overrides") and "0.0001" in text_of(driver, "#overrides")
        assert "ran out of GPU memory" in text_of(driver, ".failure")
        assert not driver.find_elements(By.ID, "note-form")  # bob does not own it: no note form

        sign_in(driver, api.url, "tok-ann")
        driver.get(f"{api.url}/jobs/{job.id}")
        note = driver.find_element(By.NAME, "note")
        note.send_keys("diverged at step 300 <b>lr</b>\nnext: 5e-5")
        click(driver, "#save-note")
        wait_until_sync(lambda: text_of(driver, "#said") == "The note is saved.", 20, "the saved note")
        assert text_of(driver, "#note") == "📝 diverged at step 300 <b>lr</b>\nnext: 5e-5"
        driver.save_screenshot(str(tmp_path / "job-page-named.png"))
        got = requests.get(
            f"{api.url}/training/jobs/{job.id}", headers={"Authorization": "Bearer tok-bob"}, timeout=10
        ).json()
        assert got["note"] == "diverged at step 300 <b>lr</b>\nnext: 5e-5" and got["name"] == HOSTILE_NAME
        driver.get(f"{api.url}/?q=diverged")  # the note is not searched: name, folder, owner and id are
        assert row_ids(driver) == []
        assert console_errors(driver) == []


def test_the_new_job_form_names_a_job_and_refuses_a_bad_name_by_its_label(tmp_path: Path) -> None:
    fake_config(tmp_path, sections="[http]\nanonymous_loopback_with_tokens = true\n")
    with serving(tmp_path, TOKENS) as api, requests.Session() as s:
        form = s.get(f"{api.url}/new", timeout=10).text
        csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        fields = {"csrf": csrf, "kind": "llm", "gpu_0": "on", "out": "output/formed", "go": "start"}
        bad = s.post(f"{api.url}/new", data=fields | {"name": "two\nlines"}, timeout=10)
        assert bad.status_code == 422 and "Name “two" in bad.text and "control character" in bad.text
        made = s.post(f"{api.url}/new", data=fields | {"name": "<i>formed</i> run"}, timeout=10)
        assert made.status_code == 200 and "/jobs/" in made.url
        assert "<title>&lt;i&gt;formed&lt;/i&gt; run · " in made.text and "<i>formed" not in made.text
