"""Every dashboard page, in a real browser (headless chromium) at desktop and phone widths, light and dark: axe-core
finds nothing wrong (WCAG 2.2 A/AA and its best practices), the phone shows the jobs table's key columns and the
whole GPUs page, a skip link leads to the content, and the colours follow the system's setting."""

from __future__ import annotations

from pathlib import Path

import requests
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.a11y import axe_violations, colour_scheme, viewport
from tests.api_env import serving
from tests.browser import browser, click, sign_in, text_of
from tests.slack_env import fake_config
from tests.waiting import wait_until_sync

TOKENS = {"TRAINBOT_API_TOKENS": "tok-ann=UANN"}
ANN = {"Authorization": "Bearer tok-ann"}
SIGNED_ONLY = "[http]\nallow_anonymous_loopback = false\n"
PHONE = 390


def _job(url: str, gpu: str, out: str, **body: object) -> str:
    reply = requests.post(
        f"{url}/training/llm/jobs",
        headers=ANN,
        timeout=10,
        json={"gpu_id": gpu, "output_dir": out, "start": True, **body},
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["job_id"])


def _status(url: str, job: str) -> str:
    return str(requests.get(f"{url}/training/jobs/{job}/status", headers=ANN, timeout=10).json()["status"])


def _settled(driver: Chrome, charted: bool) -> None:
    """The page has loaded, and its charts drawn where it has some."""
    wait_until_sync(lambda: driver.execute_script("return document.readyState") == "complete", 20, "the page")
    if charted:
        wait_until_sync(lambda: driver.find_elements(By.CSS_SELECTOR, ".chart canvas"), 20, "the chart")


def test_every_page_has_no_axe_violation_at_desktop_and_phone_widths_light_and_dark(tmp_path: Path) -> None:
    fake_config(tmp_path, gpus=2, steps=16, save_steps=4, eval_steps=4, step_s=0.05, sections=SIGNED_ONLY)
    with serving(tmp_path, TOKENS) as api, browser(tmp_path / "chrome") as driver:
        done = [_job(api.url, str(n), f"output/done-{n}") for n in range(2)]
        for job in done:
            wait_until_sync(lambda j=job: _status(api.url, j) == "succeeded", 60, f"job {job} to end")
        (tmp_path / "fake-swift").write_text(
            "#!/bin/sh\necho 'torch.OutOfMemoryError: CUDA out of memory' >&2\nexit 1\n"
        )
        failed = _job(api.url, "0", "output/failed")
        wait_until_sync(lambda: _status(api.url, failed) == "failed", 60, "the failure")
        pages = {
            "jobs": "/",
            "job": f"/jobs/{done[0]}",
            "failed job": f"/jobs/{failed}",
            "new LLM job": "/new",
            "new VLM job": "/new?kind=vlm",
            "gpus": "/web/gpus",
            "compare": f"/compare?job={done[0]}&job={done[1]}",
            "confirm": f"/jobs/{failed}/confirm?action=start",
            "compare refused": f"/compare?job={done[0]}",
        }
        found: dict[str, list[object]] = {}
        for width, scheme in ((1200, "light"), (PHONE, "light"), (1200, "dark"), (PHONE, "dark")):
            viewport(driver, width)
            colour_scheme(driver, scheme)
            driver.delete_all_cookies()
            driver.get(f"{api.url}/signin")
            if violations := axe_violations(driver):
                found[f"sign-in {width} {scheme}"] = violations
            sign_in(driver, api.url, "tok-ann")
            for name, path in pages.items():
                driver.get(api.url + path)
                _settled(driver, name in ("job", "compare"))
                if name == "job":  # its text alternatives open too
                    click(driver, "#chart ~ details.points summary")
                    wait_until_sync(lambda: text_of(driver, "#chart ~ details.points table"), 10, "the points")
                if violations := axe_violations(driver):
                    found[f"{name} {width} {scheme}"] = violations
            driver.get(f"{api.url}/new?kind=vlm")  # the form with its errors shown
            driver.find_element(By.NAME, "out").clear()
            driver.find_element(By.NAME, "lora_rank").send_keys("0")
            driver.find_element(By.ID, "preview-button").click()
            wait_until_sync(lambda: text_of(driver, "#form-error"), 20, "the form's errors")
            if violations := axe_violations(driver):
                found[f"form errors {width} {scheme}"] = violations
        driver.save_screenshot(str(tmp_path / "last-page.png"))
        assert found == {}, found


def _edges(driver: Chrome, css: str) -> list[tuple[str, float, bool]]:
    """Each matching element's text, right edge and whether it is shown."""
    return [
        (str(t), float(r), bool(v))
        for t, r, v in driver.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(e => [e.textContent.trim(), "
            "e.getBoundingClientRect().right, e.offsetParent !== null])",
            css,
        )
    ]


def test_a_laptop_shows_every_column_of_the_jobs_a_phone_their_key_columns_and_the_whole_gpus_page(
    tmp_path: Path,
) -> None:
    fake_config(tmp_path, gpus=1, steps=400, step_s=0.2, sections=SIGNED_ONLY)
    with serving(tmp_path, TOKENS) as api, browser(tmp_path / "chrome") as driver:
        running = _job(api.url, "0", "output/running")
        queued = _job(api.url, "0", "output/queued")
        wait_until_sync(
            lambda: (
                int(
                    requests.get(f"{api.url}/training/jobs/{running}/status", headers=ANN, timeout=10).json()["step"]
                    or 0
                )
                >= 2
            ),
            60,
            "a loss",
        )
        sign_in(driver, api.url, "tok-ann")
        viewport(driver, 1200)  # a laptop: every column in view, nothing to scroll to the side
        driver.get(api.url)
        wait_until_sync(lambda: text_of(driver, f"#job-{running} td:nth-child(7)"), 20, "the loss in the table")
        box = driver.execute_script("const s = document.querySelector('.scroll');return [s.scrollWidth, s.clientWidth]")
        assert box[0] <= box[1], box
        for text, right, shown in _edges(driver, f"table.jobs th, #job-{running} td"):
            assert shown and right <= 1200, (text, right)
        spilled = "return [...document.querySelectorAll('table.jobs td')].filter(td => td.scrollWidth > td.clientWidth)"
        assert driver.execute_script(spilled + ".map(td => td.textContent.trim())") == []  # a long folder wraps
        driver.save_screenshot(str(tmp_path / "jobs-laptop.png"))
        viewport(driver, PHONE)
        driver.get(api.url)
        wait_until_sync(lambda: text_of(driver, f"#job-{running} td:nth-child(7)"), 20, "the loss in the table")
        width = driver.execute_script("return window.innerWidth")
        assert width == PHONE and driver.execute_script("return document.documentElement.scrollWidth") <= PHONE
        headers = {text: (right, shown) for text, right, shown in _edges(driver, "table.jobs th")}
        for key in ("Job", "State", "Progress", "Loss"):
            right, shown = headers[key]
            assert shown and right <= PHONE, (key, headers)
        for text, right, shown in _edges(driver, f"#job-{running} td"):
            assert not shown or right <= PHONE, (text, right)
        assert text_of(driver, f"#job-{running} td:nth-child(7)")  # its loss, in view
        driver.save_screenshot(str(tmp_path / "jobs-phone.png"))

        driver.get(f"{api.url}/web/gpus")
        assert driver.execute_script("return document.documentElement.scrollWidth") <= PHONE
        box = driver.execute_script("const s = document.querySelector('.scroll');return [s.scrollWidth, s.clientWidth]")
        assert box[0] <= box[1], box  # nothing of the table hidden to the side
        for text, right, shown in _edges(driver, "table.gpus th, table.gpus td"):
            assert shown and right <= PHONE, (text, right)
        assert f"job {running}" in text_of(driver, "table.gpus")
        driver.save_screenshot(str(tmp_path / "gpus-phone.png"))
        for job in (queued, running):
            requests.post(f"{api.url}/training/jobs/{job}/stop", headers=ANN, timeout=10)
        wait_until_sync(lambda: _status(api.url, running) == "stopped", 30, "the running job to stop")


def _background(driver: Chrome) -> list[int]:
    colour = str(driver.execute_script("return getComputedStyle(document.body).backgroundColor"))
    return [int(float(n)) for n in colour[colour.index("(") + 1 : colour.index(")")].split(",")[:3]]


def test_a_skip_link_leads_to_the_content_and_the_colours_follow_the_system(tmp_path: Path) -> None:
    fake_config(tmp_path, sections=SIGNED_ONLY)
    with serving(tmp_path, TOKENS) as api, browser(tmp_path / "chrome") as driver:
        sign_in(driver, api.url, "tok-ann")
        driver.get(f"{api.url}/new")
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
        first = driver.switch_to.active_element
        assert first.text == "Skip to the content" and first.is_displayed()  # shown once focused
        first.send_keys(Keys.ENTER)
        assert driver.execute_script("return document.activeElement.id") == "main"
        colour_scheme(driver, "light")
        assert _background(driver) == [255, 255, 255]
        colour_scheme(driver, "dark")
        assert max(_background(driver)) < 60  # dark, from the system's setting alone
