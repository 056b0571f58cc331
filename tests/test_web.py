"""The web dashboard in a real browser (headless chromium) against `trainbot serve` as a real process.

Jobs run tests/fake_swift.py (scripted logs) except in the one `swift` test, which starts a real run on the tiny
model from the New job form. Screenshots land in each test's tmp dir so a failure can be looked at.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import requests
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from tests.api_env import serving, start_serve
from tests.browser import attr, browser, click, console_errors, sign_in, text_of
from tests.conftest import MakeConfig
from tests.slack_env import fake_config
from tests.waiting import wait_until_sync
from tests.web_env import SIGNED_ONLY, TOKENS, create


def row_step(driver: Chrome, job_id: str) -> int:
    value = attr(driver, f"#job-{job_id} progress", "value")
    return int(value) if value else 0


def chart_points(driver: Chrome) -> int:
    return int(attr(driver, "#chart", "data-points") or 0)


def stop_with_confirm(driver: Chrome) -> None:
    click(driver, "#do-stop")
    wait_until_sync(lambda: "/confirm" in driver.current_url, 20, "the confirm step")
    click(driver, "#confirm")


def test_a_job_started_over_the_api_appears_advances_live_and_only_its_owner_may_stop_it(tmp_path: Path) -> None:
    fake_config(tmp_path, steps=80, step_s=0.25, save_steps=20, sections=SIGNED_ONLY)
    with serving(tmp_path, TOKENS) as api, browser(tmp_path / "chrome") as driver:
        driver.get(api.url)
        assert "/signin" in driver.current_url  # no token, no page
        sign_in(driver, api.url, "tok-ann")
        assert "No jobs yet" in text_of(driver, "#rows")

        job = create(api.url, "tok-bob")  # another user, over the API
        wait_until_sync(lambda: row_step(driver, job) >= 1, 60, "bob's job to appear in the table with a step")
        seen = row_step(driver, job)
        wait_until_sync(lambda: row_step(driver, job) > seen, 30, "the bar to advance without a reload")
        assert "UBOB" in text_of(driver, f"#job-{job}") and "running" in text_of(driver, f"#job-{job}")
        driver.save_screenshot(str(tmp_path / "jobs-page.png"))

        driver.get(f"{api.url}/jobs/{job}")
        wait_until_sync(lambda: chart_points(driver) >= 2, 30, "the loss curve")
        points = chart_points(driver)
        wait_until_sync(lambda: chart_points(driver) > points, 30, "the curve to grow without a reload")
        wait_until_sync(lambda: "train:" in text_of(driver, "#log"), 30, "the log to show")
        assert driver.find_elements(By.CSS_SELECTOR, "canvas")  # uPlot drew
        assert not driver.find_elements(By.ID, "do-stop")  # ann does not own it
        driver.save_screenshot(str(tmp_path / "job-page-not-owner.png"))

        cookie = {"trainbot_session": driver.get_cookie("trainbot_session")["value"]}  # type: ignore[index]
        forged = requests.post(f"{api.url}/jobs/{job}/stop", cookies=cookie, timeout=10, allow_redirects=False)
        assert forged.status_code == 403 and "CSRF" in forged.text
        csrf = attr(driver, "input[name=csrf]", "value")
        as_ann = requests.post(f"{api.url}/jobs/{job}/stop", cookies=cookie, data={"csrf": csrf}, timeout=10)
        assert "only" in as_ann.text and "running" in as_ann.text  # the shared rule's words; still running
        assert console_errors(driver) == []

        sign_in(driver, api.url, "tok-bob")
        driver.get(f"{api.url}/jobs/{job}")
        stop_with_confirm(driver)
        wait_until_sync(lambda: text_of(driver, "#state") == "stopped", 60, "the page to say stopped")
        driver.save_screenshot(str(tmp_path / "job-page-stopped.png"))
        assert console_errors(driver) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_open_job_page_survives_a_restart_of_serve_and_catches_up(tmp_path: Path) -> None:
    fake_config(tmp_path, steps=60, step_s=0.3, save_steps=20, sections=SIGNED_ONLY)
    port = str(_free_port())
    with browser(tmp_path / "chrome") as driver:  # first: without chromium it skips before serve starts
        first = start_serve(tmp_path, TOKENS, "--port", port)
        try:
            job = create(first.url, "tok-bob")
            sign_in(driver, first.url, "tok-bob")
            driver.get(f"{first.url}/jobs/{job}")
            wait_until_sync(lambda: chart_points(driver) >= 3, 60, "the curve before the restart")
        finally:
            assert first.stop() == 0
        before = chart_points(driver)
        with serving(tmp_path, TOKENS, "--port", port) as second:
            assert second.url == first.url
            wait_until_sync(lambda: text_of(driver, "#state") == "succeeded", 120, "the page to catch up to the end")
            assert chart_points(driver) >= before and chart_points(driver) == 60  # every point, none twice
            driver.save_screenshot(str(tmp_path / "job-page-after-restart.png"))


@pytest.mark.swift
def test_a_real_swift_job_started_from_the_form_shows_progress_live_and_stops(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    make_config(
        extra={"max_steps": 400, "save_steps": 100, "logging_steps": 1},
        sections="[gpus]\ninventory = 1\n" + SIGNED_ONLY,
    )
    with serving(tmp_path, TOKENS) as api, browser(tmp_path / "chrome", width=412, height=915) as driver:
        sign_in(driver, api.url, "tok-ann")
        driver.get(f"{api.url}/new")
        driver.find_element(By.NAME, "gpu_0").click()
        out = driver.find_element(By.NAME, "out")
        out.clear()
        out.send_keys("output/from-the-form")
        driver.find_element(By.ID, "preview-button").click()
        wait_until_sync(lambda: "sft" in text_of(driver, "#preview"), 60, "the dry-run preview")
        assert "from-the-form" in text_of(driver, "#preview")
        driver.find_element(By.ID, "start-button").click()
        wait_until_sync(lambda: "/jobs/" in driver.current_url, 30, "the new job's page")
        wait_until_sync(lambda: chart_points(driver) >= 2, 240, "real swift's first losses on the curve")
        points = chart_points(driver)
        wait_until_sync(lambda: chart_points(driver) > points, 120, "the curve to grow")
        step = int(attr(driver, "#progress progress", "value") or 0)
        wait_until_sync(lambda: int(attr(driver, "#progress progress", "value") or 0) > step, 120, "the bar")
        driver.save_screenshot(str(tmp_path / "job-page.png"))
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")  # phone
        stop_with_confirm(driver)
        wait_until_sync(lambda: text_of(driver, "#state") == "stopped", 120, "stopped")
        assert console_errors(driver) == []


def _fill_vlm_form(driver: Chrome, url: str, gpu: str, out: str, model: str) -> None:
    driver.get(f"{url}/new?kind=vlm")
    driver.find_element(By.NAME, f"gpu_{gpu}").click()
    field = driver.find_element(By.NAME, "out")
    field.clear()
    field.send_keys(out)
    driver.find_element(By.NAME, "model").send_keys(model)
    driver.find_element(By.ID, "preview-button").click()


def test_the_form_takes_a_rooted_local_model_as_slack_and_the_api_do(tmp_path: Path) -> None:
    fake_config(tmp_path, sections=SIGNED_ONLY + '[paths]\nmodel_roots = ["models"]\n')
    model = tmp_path / "models" / "qwen-vl"
    model.mkdir(parents=True)
    with serving(tmp_path, TOKENS) as api, browser(tmp_path / "chrome") as driver:
        sign_in(driver, api.url, "tok-ann")
        _fill_vlm_form(driver, api.url, "0", "output/rooted", "models/qwen-vl")
        wait_until_sync(
            lambda: "sft" in text_of(driver, "#preview") or text_of(driver, "#form-error"), 30, "the preview"
        )
        assert text_of(driver, "#form-error") == "" and f"--model {model}" in text_of(driver, "#preview")
        driver.find_element(By.ID, "start-button").click()
        wait_until_sync(lambda: "/jobs/" in driver.current_url, 30, "the new job's page")
        job_id = driver.current_url.split("?")[0].rsplit("/", 1)[1]
        job = requests.get(
            f"{api.url}/training/jobs/{job_id}", headers={"Authorization": "Bearer tok-ann"}, timeout=10
        ).json()
        assert job["overrides"] == {"model": str(model)} and job["user_id"] == "UANN"
        assert console_errors(driver) == []
        _fill_vlm_form(driver, api.url, "1", "output/elsewhere", "/etc")  # outside the model folders
        wait_until_sync(lambda: text_of(driver, "#form-error"), 30, "the form's refusal")
        said = text_of(driver, "#form-error")
        assert "Model “/etc”" in said and str(tmp_path / "models") in said, said
        assert "`" not in said and "/train" not in said and "model=" not in said  # a form's words, not the chat's
        driver.save_screenshot(str(tmp_path / "new-job-refused.png"))  # its answer is a 422: no console check
