"""Actions from the console's pages, checked where they land: a rollout paused and
resumed as a phone's update check sees it, a push that reaches the FCM stand-in and
shows in its funnel, and an analyst kept from the release actions by the server."""

from __future__ import annotations

import time
from typing import Any

import pytest

#: One server and one browser for all of them: keep them on one xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("console_browser")

DEADLINE = 60.0
SAFETY_DEADLINE = 180.0


def _offered(stand: Any, key: str, device: str) -> bool:
    """Whether a phone on the channel is offered the demo's offline package."""
    body = {"device_id": device, "os": "android", "app_version": "5.0.0",
            "packages": [{"kind": "offline", "id": "transfer", "hash": None}]}  # fmt: skip
    answer = stand.client("/client/v1/updates", key, body)
    return any(p["id"] == "transfer" and p["action"] == "update" for p in answer["packages"])


def _until(predicate: Any, what: str, deadline: float = DEADLINE) -> Any:
    """Poll ``predicate`` until it answers something truthy; ``deadline`` is a safety net
    against a hang, generous enough for a loaded machine, not a measure of speed."""
    give_up = time.monotonic() + deadline
    while not (answer := predicate()):
        assert time.monotonic() < give_up, what
        time.sleep(0.1)
    return answer


def test_pause_and_resume_from_the_releases_page_reach_the_update_check(
    page: Any, console: Any, stand: Any
) -> None:
    key = stand.deployment_key("staging")
    assert _offered(stand, key, "phone-before")
    console.sign_in(page, "rita")
    console.open(page, "releases")
    # a release manager sees the adoption chart too (the adoption report admits the role)
    page.get_by_role("heading", name="Adoption of transfer").first.wait_for()
    assert console.charts_drawn(page)
    row = page.locator("tr[data-release='1']")
    row.get_by_role("button", name="Pause").focus()  # by the keyboard alone
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    assert "Pause release #1 (transfer 1.0.0) on staging" in dialog.inner_text()
    page.keyboard.press("Escape")  # cancelled: nothing changes, the focus goes back
    dialog.wait_for(state="detached")
    assert page.evaluate("() => document.activeElement.textContent") == "Pause"
    assert row.locator(".badge").inner_text() == "active"

    row.get_by_role("button", name="Pause").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    page.locator("tr[data-release='1'] .badge", has_text="paused").wait_for()
    _until(lambda: not _offered(stand, key, "phone-while-paused"), "the paused release is still offered")

    page.locator("tr[data-release='1']").get_by_role("button", name="Resume").click()
    dialog = page.get_by_role("dialog")
    assert "Resume release #1 (transfer 1.0.0) on staging" in dialog.inner_text()
    dialog.get_by_role("button", name="Confirm").click()
    page.locator("tr[data-release='1'] .badge", has_text="active").wait_for()
    _until(lambda: _offered(stand, key, "phone-after-resume"), "the resumed release is not offered")
    actions = [e["action"] for e in stand.api("GET", "/api/v1/audit?app=superapp&limit=10")["items"]]
    assert "release.pause" in actions and "release.resume" in actions, actions


def test_a_push_sent_from_the_page_reaches_the_stand_in_and_shows_its_funnel(
    page: Any, console: Any, stand: Any
) -> None:
    key = stand.deployment_key("production")
    registered = stand.client(
        "/client/v1/devices", key, {"device_id": "browser-phone", "provider": "fcm", "token": "tok-browser"}
    )
    assert registered["device_id"] == "browser-phone"
    console.sign_in(page, "pete")
    console.open(page, "push")
    page.get_by_label("Audience").select_option("devices")
    page.get_by_label("Devices, users or tags (comma separated)").fill("browser-phone")
    page.get_by_label("Title", exact=True).fill("Rate change")
    page.get_by_label("Message", exact=True).fill("Your deposit rate changes on Monday")
    page.get_by_role("button", name="Send").click()
    funnel = page.locator(".funnel")
    funnel.wait_for()
    message_id = funnel.get_attribute("data-message")

    # The worker delivers in the background: wait for the delivery to leave "pending" (the
    # event), read over the API; the deadline only keeps a broken worker from hanging the run.
    def delivered() -> dict[str, Any] | None:
        stats = stand.api("GET", f"/api/v1/push/messages/{message_id}")["stats"]
        return stats if stats["targeted"] >= 1 and stats["pending"] == 0 else None

    stats = _until(delivered, "the push never left the queue", deadline=SAFETY_DEADLINE)
    assert stats["providers"]["fcm"]["sent"] == 1, stats  # the stand-in took it

    def shown() -> list[list[str]] | None:  # reopen the message: the page redraws its funnel
        page.get_by_role("button", name=f"Show #{message_id}").click()
        figure = page.locator(f".funnel[data-message='{message_id}'] figure").first
        cells = [r.locator("td").all_text_contents() for r in figure.locator("tbody tr").all()]
        wanted = ["fcm", "1", "1", "1"]  # provider, queued, sent, delivered
        return cells if any(c[:4] == wanted for c in cells) else None

    _until(shown, "the page does not show the delivered push")
    assert console.charts_drawn(page)


def test_an_analyst_cannot_reach_the_release_actions(page: Any, console: Any, stand: Any) -> None:
    console.sign_in(page, "anna")
    nav = page.get_by_role("navigation", name="Main")
    assert "Packages" not in nav.inner_text() and "Push" not in nav.inner_text()
    console.open(page, "releases")
    assert page.locator("tr[data-release='1']").count() == 1  # the analyst reads releases...
    assert page.get_by_role("button", name="Pause").count() == 0  # ...but has no actions
    assert page.locator("td.actions").count() == 0
    # a forged form post with the session's own CSRF token: refused by the server's role check
    forged = page.evaluate(
        """async () => {
          const session = await (await fetch('/console/api/session')).json();
          const post = (headers) => fetch('/api/v1/apps/superapp/releases/1/pause', {method: 'POST', headers});
          const withToken = await post({'X-CSRF-Token': session.csrf_token});
          const without = await post({});
          return [withToken.status, (await withToken.json()).error.code, without.status, (await without.json()).error.code];
        }"""
    )
    assert forged[0] == 403 and forged[2] == 403, forged
    assert forged[3] == "csrf_failed", forged
    release = stand.api("GET", "/api/v1/apps/superapp/releases/1")
    assert release["status"] == "active"
