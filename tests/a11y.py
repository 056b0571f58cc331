"""axe-core (tests/vendor/axe.min.js, see tests/vendor/VERSIONS) run inside the page a browser test has open, and
the page's colour scheme set as a system setting would (Chrome DevTools' media emulation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selenium.webdriver import Chrome

AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text(encoding="utf-8")
# WCAG 2.0-2.2 A and AA, and axe's best practices (landmarks, headings, a skip link's target, ...)
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]


def axe_violations(driver: Chrome) -> list[dict[str, Any]]:
    """What axe-core finds wrong on the page as it is now: each rule broken, with the elements that break it."""
    if not driver.execute_script("return typeof window.axe !== 'undefined'"):
        driver.execute_script(AXE)
    driver.set_script_timeout(60)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}, resultTypes: ['violations']})"
        ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' ') + ': ' + n.failureSummary).slice(0, 5)}))))"
        ".catch(e => done([{id: 'axe-error', help: String(e), nodes: []}]));",
        TAGS,
    )
    return list(result)


def colour_scheme(driver: Chrome, scheme: str) -> None:
    """`light` or `dark`, as the system setting (prefers-color-scheme) would say."""
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"media": "", "features": [{"name": "prefers-color-scheme", "value": scheme}]}
    )


def viewport(driver: Chrome, width: int, height: int = 844) -> None:
    """The page laid out `width` CSS pixels wide, as on a phone (a headless window is at least 500 wide)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )
