"""Live pages that hold up (issue 29): ten tabs of one browser all live, a log without a line twice after restarts of
`trainbot serve`, a page that says when it is stale, open sections, focus and a selection kept across updates, and
a jobs feed that sends only the rows that changed.

Real chromium (tests/browser.py) against `trainbot serve` as a real process; jobs run tests/fake_swift.py.
"""

from __future__ import annotations

import html
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium.common.exceptions import TimeoutException
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from runner.log_tail import clean_lines
from tests.api_env import serving, start_serve
from tests.browser import attr, browser, console_errors, sign_in, text_of
from tests.slack_env import fake_config
from tests.waiting import wait_until_sync
from tests.web_env import ANONYMOUS_TOO, SIGNED_ONLY, TOKENS, create

BANNER = re.compile(r"^reconnecting… \(last update (?:(\d+)s|\d+m \d\ds) ago\)$")


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _api(url: str, token: str, method: str, path: str) -> Any:
    reply = requests.request(method, f"{url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert reply.ok, reply.text
    return reply.json()


def _row_state(driver: Chrome, job: str) -> str:
    return text_of(driver, f"#job-{job} td.state")


def _banner(driver: Chrome) -> str:
    """The stale banner's text while it shows ("" when hidden or absent)."""
    return str(
        driver.execute_script(
            "const b = document.getElementById('live-status'); return b && !b.hidden ? b.textContent.trim() : '';"
        )
    )


def test_ten_tabs_of_one_browser_all_stay_live(tmp_path: Path) -> None:
    fake_config(tmp_path, steps=400, step_s=0.25, sections=SIGNED_ONLY)
    with serving(tmp_path, TOKENS) as api, browser(tmp_path / "chrome") as driver:
        driver.set_page_load_timeout(30)  # a 7th page behind six held connections would wait for ever
        sign_in(driver, api.url, "tok-ann")
        job = create(api.url, "tok-ann", start=False)
        tabs: list[tuple[str, str]] = []
        for n in range(10):
            if n:
                driver.switch_to.new_window("tab")
            page = "jobs" if n % 2 == 0 else "job"
            try:
                driver.get(f"{api.url}/" if page == "jobs" else f"{api.url}/jobs/{job}")
            except TimeoutException:
                pytest.fail(f"tab {n + 1} did not load in 30 s: the open tabs hold every connection to the server")
            assert job in text_of(driver, "main"), f"tab {n + 1} shows no job"
            tabs.append((driver.current_window_handle, page))

        _api(api.url, "tok-ann", "POST", f"/training/jobs/{job}/start")  # a change made after all ten opened
        for n, (handle, page) in enumerate(tabs, start=1):
            driver.switch_to.window(handle)
            where = f"#job-{job} td.state" if page == "jobs" else "#state"
            wait_until_sync(
                lambda: text_of(driver, where).startswith("running"),  # noqa: B023 (waited on here)
                60,
                f"tab {n} ({page} page) to show it running",
            )
        driver.save_screenshot(str(tmp_path / "tenth-tab.png"))
        assert console_errors(driver) == []
        _api(api.url, "tok-ann", "POST", f"/training/jobs/{job}/stop")


def _log_path(url: str, job: str, root: Path) -> Path:
    found = _api(url, "tok-bob", "GET", f"/training/jobs/{job}")["log_path"]
    assert found, "the job has no log yet"
    return Path(found) if Path(found).is_absolute() else root / found


def _page_log(driver: Chrome) -> list[str]:
    return [
        line
        for line in str(driver.execute_script("return document.getElementById('log').textContent")).split("\n")
        if line
    ]


def _step_lines(lines: list[str]) -> int:
    return sum("global_step/max_steps" in line for line in lines)


def test_a_job_pages_log_shows_each_line_once_after_three_restarts_of_serve(tmp_path: Path) -> None:
    said = tmp_path / "say.txt"
    said.write_text("loading <b>weights</b> & the tokenizer\n")  # text a user typed is shown as text
    fake_config(
        tmp_path,
        steps=2000,
        step_s=0.1,
        sections=SIGNED_ONLY,
        env={"FAKE_SWIFT_PRINT_STEPS": "1", "FAKE_SWIFT_SAY_FILE": str(said)},
    )
    port = _free_port()
    served = start_serve(tmp_path, TOKENS, "--port", port)
    try:
        with browser(tmp_path / "chrome") as driver:
            job = create(served.url, "tok-bob")
            sign_in(driver, served.url, "tok-bob")
            driver.get(f"{served.url}/jobs/{job}")
            wait_until_sync(lambda: _step_lines(_page_log(driver)) >= 3, 60, "the log's first steps on the page")
            for restart in range(1, 4):
                assert served.stop() == 0
                served = start_serve(tmp_path, TOKENS, "--port", port)
                written = _step_lines(clean_lines(_log_path(served.url, job, tmp_path).read_text()))
                wait_until_sync(
                    lambda: _step_lines(_page_log(driver)) > written,  # noqa: B023
                    60,
                    f"the lines written since restart {restart} on the page",
                )
            _api(served.url, "tok-bob", "POST", f"/training/jobs/{job}/stop")
            wait_until_sync(lambda: text_of(driver, "#state") == "stopped", 60, "the page to say stopped")
            log = _log_path(served.url, job, tmp_path)

            def same_as_the_file() -> bool:
                return _page_log(driver) == clean_lines(log.read_text())

            try:
                wait_until_sync(same_as_the_file, 30, "the page's log to be the file's, each line once")
            finally:
                shown = _page_log(driver)
                twice = sorted({line for line in shown if shown.count(line) > 1})
                assert not twice, f"{len(twice)} lines shown more than once, e.g. {twice[:3]}"
            assert "loading <b>weights</b> & the tokenizer" in shown
            assert not driver.find_elements(By.CSS_SELECTOR, "#log b")
            driver.save_screenshot(str(tmp_path / "after-three-restarts.png"))
    finally:
        served.stop()


def test_a_page_says_it_is_stale_while_the_server_is_away_and_stops_saying_so_after(tmp_path: Path) -> None:
    fake_config(tmp_path, steps=400, step_s=0.25, sections=SIGNED_ONLY)
    port = _free_port()
    served = start_serve(tmp_path, TOKENS, "--port", port)
    try:
        with browser(tmp_path / "chrome") as driver:  # a browser without shared workers: each tab streams alone
            driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": "delete window.SharedWorker;"})
            job = create(served.url, "tok-ann", start=False)
            sign_in(driver, served.url, "tok-ann")
            assert _row_state(driver, job) == "created" and _banner(driver) == ""
            assert served.stop() == 0

            found = wait_until_sync(lambda: BANNER.match(_banner(driver)), 30, "the page to say it is reconnecting")
            first = int(found.group(1))
            wait_until_sync(
                lambda: int(BANNER.match(_banner(driver)).group(1) or 0) >= first + 2,
                30,  # type: ignore[union-attr]
                "the banner to count the seconds since the last update",
            )
            driver.save_screenshot(str(tmp_path / "stale.png"))

            served = start_serve(tmp_path, TOKENS, "--port", port)
            wait_until_sync(lambda: _banner(driver) == "", 30, "the banner to go once the server is back")
            _api(served.url, "tok-ann", "POST", f"/training/jobs/{job}/start")
            wait_until_sync(lambda: _row_state(driver, job).startswith("running"), 60, "the row live again")
            errors = console_errors(driver)  # the stream's tries while the server was away are not the page's
            assert [e for e in errors if "/web/live" not in e["message"]] == [], errors
            _api(served.url, "tok-ann", "POST", f"/training/jobs/{job}/stop")
    finally:
        served.stop()


_SECTION = """const d = [...document.querySelectorAll('#panel details')]
    .find(d => d.querySelector('summary').textContent.startsWith(arguments[0]));"""


def _section_open(driver: Chrome, title: str) -> bool:
    return bool(driver.execute_script(_SECTION + "return d ? d.open : false;", title))


def test_open_sections_focus_and_a_selection_survive_twenty_live_updates(tmp_path: Path) -> None:
    fake_config(tmp_path, steps=400, step_s=0.2, save_steps=5, sections=SIGNED_ONLY)
    with serving(tmp_path, TOKENS) as api, browser(tmp_path / "chrome") as driver:
        job = create(api.url, "tok-ann")
        sign_in(driver, api.url, "tok-ann")
        driver.get(f"{api.url}/jobs/{job}")
        wait_until_sync(lambda: text_of(driver, "#state") == "running", 60, "the job to run")
        for title in ("Command line", "Events"):  # as a click does: open the section, focus its summary (one step)
            driver.execute_script(
                _SECTION + "if (!d.open) { d.querySelector('summary').click(); }d.querySelector('summary').focus();",
                title,
            )
        command = str(
            driver.execute_script("""const pre = document.querySelector('#panel pre.cmd');
            const range = document.createRange(); range.selectNodeContents(pre);
            getSelection().removeAllRanges(); getSelection().addRange(range); return getSelection().toString();""")
        )
        assert "sft" in command
        events_before = text_of(driver, "#panel details:last-of-type summary")

        seen: set[str] = set()

        def updates() -> bool:
            seen.add(str(attr(driver, "#progress progress", "value")))
            return len(seen) > 20

        wait_until_sync(updates, 120, "20 live updates of the progress", every=0.05)
        assert _section_open(driver, "Command line") and _section_open(driver, "Events"), "a section closed"
        focused = driver.execute_script("const e = document.activeElement; return [e.tagName, e.textContent];")
        assert focused[0] == "SUMMARY" and focused[1].startswith("Events"), f"focus moved to {focused}"
        assert driver.execute_script("return getSelection().toString()") == command, "the selection was lost"
        assert text_of(driver, "#panel details:last-of-type summary") != events_before  # it was updated, open
        driver.save_screenshot(str(tmp_path / "sections-kept.png"))
        assert console_errors(driver) == []
        _api(api.url, "tok-ann", "POST", f"/training/jobs/{job}/stop")


def _messages(reply: requests.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    event = ""
    for line in reply.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event, json.loads(line[6:])


def _view(page: str) -> dict[str, Any]:
    found = re.search(r"data-live='([^']*)'", page)
    assert found, "the page has no live view"
    return dict(json.loads(html.unescape(found.group(1))))


def test_the_jobs_feed_sends_only_the_rows_that_changed_since_the_page_was_rendered(tmp_path: Path) -> None:
    fake_config(tmp_path, gpus=1, steps=400, step_s=0.2, sections=ANONYMOUS_TOO)
    with serving(tmp_path, TOKENS) as api, requests.Session() as s:
        running = create(api.url, "tok-ann")
        idle = [create(api.url, "tok-bob", start=False) for _ in range(2)]
        wait_until_sync(
            lambda: (_api(api.url, "tok-ann", "GET", f"/training/jobs/{running}/status")["step"] or 0) >= 1,
            60,
            "the job's first step",
        )
        view = _view(s.get(f"{api.url}/", timeout=10).text)
        assert [key for key, _ in view["have"]] == [f"job-{j}" for j in (*reversed(idle), running)]

        sent: list[dict[str, Any]] = []
        with s.post(f"{api.url}/web/live", json={"views": {"tab1": view}}, stream=True, timeout=30) as reply:
            assert reply.status_code == 200, reply.text
            for event, data in _messages(reply):
                if event == "rows":
                    sent.append(data)
                if len(sent) == 5:
                    break
        keys = [key for data in sent for key, _, _ in data["set"]]
        assert set(keys) == {f"job-{running}"}, f"rows sent besides the running job's: {keys}"
        assert all("order" not in data and data["view"] == "tab1" for data in sent)
        rows = [row for data in sent for _, _, row in data["set"]]
        assert all(row.startswith('<tr id="job-') and row.endswith("</tr>") for row in rows)

        bad = s.post(f"{api.url}/web/live", json={"views": {"tab1": {"kind": "rows", "have": "all"}}}, timeout=10)
        assert bad.status_code == 422 and "views.tab1" in bad.text and "/static/live-hub.js" in bad.text
        _api(api.url, "tok-ann", "POST", f"/training/jobs/{running}/stop")
