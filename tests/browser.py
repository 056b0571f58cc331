"""Debian's headless chromium driven by Selenium for the dashboard tests (scripts/browser_up.sh installs it)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from tests.waiting import wait_until_sync

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@contextmanager
def browser(profile: Path, width: int = 1200, height: int = 900) -> Iterator[webdriver.Chrome]:
    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_bin is None:
        pytest.skip("chromium and chromium-driver are not installed: run scripts/browser_up.sh")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_bin), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def sign_in(driver: webdriver.Chrome, url: str, token: str) -> None:
    driver.get(f"{url}/signin")
    driver.find_element(By.NAME, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form button").click()
    wait_until_sync(lambda: driver.current_url.rstrip("/") == url, 20, "the jobs page after signing in")


def text_of(driver: webdriver.Chrome, css: str) -> str:
    """The element's text now ("" if absent), read in one step: live swaps replace elements under a reader."""
    return str(
        driver.execute_script(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : '';", css
        )
    )


def attr(driver: webdriver.Chrome, css: str, name: str) -> Any:
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null;", css, name
    )


def console_errors(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def click(driver: webdriver.Chrome, css: str) -> None:
    """Click what matches now, in one step (a live swap may replace the element between a find and a click)."""
    found = driver.execute_script(
        "const e = document.querySelector(arguments[0]); if (e) { e.click(); } return e !== null;", css
    )
    assert found, f"nothing matches {css} on {driver.current_url}"
