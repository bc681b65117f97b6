"""The console in headless chromium: sign-in and sign-out, refusals and the slow-down,
every chart drawn (with screenshots), and axe-core on the main pages."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

#: One server and one browser for all of them: keep them on one xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("console_browser")

PAGES = {
    "overview": "",
    "releases": "releases",
    "packages": "packages",
    "push": "push",
    "analytics-reports": "analytics?view=reports",
    "analytics-journeys": "analytics?view=journeys",
    "analytics-retention": "analytics?view=retention",
    "analytics-ux": "analytics?view=ux",
    "audit": "audit",
}
#: The issue's budget: at most 400 KB of compressed JavaScript per page.
MAX_SCRIPT_BYTES = 400 * 1024
SCRIPT_BYTES = """() => performance.getEntriesByType('resource')
  .filter((e) => e.name.endsWith('.js')).reduce((n, e) => n + e.encodedBodySize, 0)"""
#: A page whose chart is only axes and a legend paints far fewer pixels than this.
MIN_PAINTED = 2_000


def test_sign_in_see_the_overview_and_sign_out(page: Any, console: Any, stand: Any) -> None:
    console.sign_in(page, "alice")
    page.wait_for_selector("main[data-ready=true]")
    assert page.get_by_text("Signed in as alice (admin)").is_visible()
    assert page.locator(".tile-value").first.inner_text().strip() != ""
    nav = page.get_by_role("navigation", name="Main")
    assert [a.inner_text() for a in nav.get_by_role("link").all()] == [
        "Overview", "Releases", "Packages", "Push", "Analytics", "Audit log",
    ]  # fmt: skip
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("Password").wait_for()
    assert page.url.endswith("/console/sign-in")
    assert page.evaluate("async () => (await fetch('/console/api/session')).status") == 401
    page.goto(stand.url + "/console/releases")  # the old cookie opens nothing
    page.get_by_label("Password").wait_for()
    assert page.get_by_role("navigation", name="Main").count() == 0


def test_a_wrong_password_is_refused_and_repeated_failures_slow_down(page: Any, stand: Any) -> None:
    page.goto(stand.url + "/console/")
    page.get_by_label("User name").fill("mallory")
    messages = []
    for _ in range(6):
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Sign in").click()
        alert = page.get_by_role("alert")
        alert.wait_for()
        messages.append(alert.inner_text())
        page.wait_for_function("() => !document.querySelector('button[type=submit]').disabled")
        if messages[-1].startswith("Too many"):
            break
    # refused plainly at first; after repeated failures, told to wait (the server's 429)
    assert messages[:4] == ["Wrong user name or password."] * 4
    locked = re.fullmatch(r"Too many failed attempts\. Try again in (\d+) seconds\.", messages[-1])
    assert locked and int(locked.group(1)) > 0, messages
    assert page.get_by_role("navigation", name="Main").count() == 0


def test_every_chart_draws_on_the_demo_data(page: Any, console: Any, screenshots: Path) -> None:
    console.sign_in(page, "alice")
    drawn: dict[str, list[int]] = {}
    for name, path in PAGES.items():
        console.open(page, path)
        assert page.locator(".msg.error").count() == 0, page.locator(".msg.error").all_inner_texts()
        drawn[name] = console.charts_drawn(page)
        assert 0 < page.evaluate(SCRIPT_BYTES) <= MAX_SCRIPT_BYTES, name
        page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)
        if name == "overview":  # the same numbers as a table, for keyboard and screen reader users
            page.get_by_text("Table view").first.click()
            assert page.locator("details[open] table tbody tr").count() > 0
    for name in ("overview", "releases", "packages", "analytics-reports", "analytics-journeys",
                 "analytics-retention", "analytics-ux"):  # fmt: skip
        assert drawn[name], f"{name}: no chart"
        assert all(n > MIN_PAINTED for n in drawn[name]), (name, drawn[name])


def test_the_page_speaks_chinese_with_chinese_numbers(page: Any, console: Any, screenshots: Path) -> None:
    console.sign_in(page, "alice")
    page.get_by_label("Language").select_option("zh-CN")
    page.get_by_role("link", name="概览").wait_for()
    page.wait_for_selector("main[data-ready=true]")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.get_by_text("今日活跃用户").is_visible()
    console.charts_drawn(page)
    page.screenshot(path=str(screenshots / "overview-zh-CN.png"), full_page=True)
    page.get_by_label("语言").select_option("en")
    page.get_by_role("link", name="Overview").wait_for()


AXE = Path(__file__).resolve().parents[2] / "web" / "node_modules" / "axe-core" / "axe.min.js"
AXE_PAGES = ["", "releases", "push", "analytics?view=retention", "analytics?view=journeys", "audit"]


def test_axe_finds_no_serious_or_critical_violation(browser: Any, console: Any, stand: Any) -> None:
    if not AXE.exists():
        pytest.skip("axe-core is not installed: cd web && npm ci")
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    try:
        page = context.new_page()
        page.goto(stand.url + "/console/")
        page.get_by_label("Password").wait_for()
        found = {"sign-in": console.axe_violations(page)}
        console.sign_in(page, "alice")
        for path in AXE_PAGES:
            console.open(page, path)
            console.charts_drawn(page)
            found[path or "overview"] = console.axe_violations(page)
        serious = {
            name: [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in violations]
            for name, violations in found.items()
            if violations
        }
        assert serious == {}
    finally:
        context.close()
