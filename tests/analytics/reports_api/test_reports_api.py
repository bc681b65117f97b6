"""Every report kind through ``/api/v1/analytics/reports/{kind}``: roles, answers, bad input."""

from __future__ import annotations

from typing import Any

import pytest

from mpaas.analytics.demo.campaigns import PUSH_ID
from mpaas.analytics.demo.catalogue import NEW_PACKAGE, OLD_PACKAGE
from tests_support import assert_error

R = "/api/v1/analytics/reports"
BANK = {"app": "bank", "from": "2026-11-17", "to": "2026-11-30"}

pytestmark = pytest.mark.usefixtures("apps")


async def get(client: Any, kind: str, headers: dict[str, str], **params: Any) -> Any:
    resp = await client.get(f"{R}/{kind}", params=params, headers=headers)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["result"]


async def test_roles(client: Any, headers: Any) -> None:
    for role, status in (("analyst", 200), ("admin", 200), ("release-manager", 403), ("push-operator", 403)):
        resp = await client.get(f"{R}/active-users", params=BANK, headers=await headers(role))
        assert resp.status == status, (role, await resp.text())
        resp = await client.get(
            "/api/v1/analytics/saved-reports", params={"app": "bank"}, headers=await headers(role)
        )
        assert resp.status == status, (role, await resp.text())
    resp = await client.get(f"{R}/active-users", params=BANK)
    assert resp.status == 401
    assert_error(await resp.json(), "missing_token")
    # Adoption (aggregate device shares per package version) is the release engineers' too:
    # the console's releases page draws it for them; every other kind stays the analysts'.
    adoption = {"app": "bank", "package_id": "transfer", "last_days": "7"}
    for role, status in (("release-manager", 200), ("push-operator", 403), ("analyst", 200)):
        resp = await client.get(f"{R}/adoption", params=adoption, headers=await headers(role))
        assert resp.status == status, (role, await resp.text())
    resp = await client.get(f"{R}/retention", params=BANK, headers=await headers("release-manager"))
    assert resp.status == 403


async def test_every_kind_answers_on_the_demo(client: Any, analyst: dict[str, str]) -> None:
    days = await get(client, "active-users", analyst, **BANK)
    assert len(days["days"]) == 14 and all(d["dau"] <= d["wau"] <= d["mau"] for d in days["days"])
    assert max(d["dau"] for d in days["days"]) > 0
    trend = await get(client, "events", analyst, **BANK, events="ux.app_start,home.viewed", interval="day")
    assert {s["event"] for s in trend["series"]} == {"ux.app_start", "home.viewed"}
    new = await get(client, "new-returning", analyst, **BANK)
    assert sum(d["new"] for d in new["days"]) > 0
    sticky = await get(client, "stickiness", analyst, **BANK)
    assert sum(sticky["persons_by_days_active"]) > 0
    retention = await get(client, "retention", analyst, **BANK, periods=7)
    assert retention["periods"] == 7 and retention["cohorts"][0]["size"] > 0
    funnel = await get(
        client, "funnel", analyst, **BANK, steps="login.start,login.otp_verified,login.succeeded"
    )
    counts = [s["count"] for s in funnel["groups"][0]["steps"]]
    assert counts[0] >= counts[1] >= counts[2] > 0
    paths = await get(client, "paths", analyst, **BANK, event="home.viewed", limit=5)
    assert paths["total"] > 0 and 0 < len(paths["steps"]) <= 5
    adoption = await get(client, "adoption", analyst, **BANK, package_id="transfer")
    versions = {v["version"] for d in adoption["days"] for v in d["versions"]}
    assert {OLD_PACKAGE, NEW_PACKAGE} <= versions
    push = await get(client, "push", analyst, **BANK, push_id=PUSH_ID)
    assert push["rows"] and all(r["push_id"] == PUSH_ID for r in push["rows"])
    assert 0 < push["by_push"][0]["arrival_rate"] <= 1
    startup = await get(client, "startup", analyst, **BANK)
    assert {r["start_type"] for r in startup["rows"]} == {"cold", "warm"}
    stability = await get(client, "stability", analyst, **BANK)
    assert stability["total"]["users"] > 0 and 0 <= stability["total"]["crash_free_users"] <= 1
    h5 = await get(client, "h5", analyst, **BANK)
    assert {r["package_version"] for r in h5["rows"]} >= {OLD_PACKAGE}
    network = await get(client, "network", analyst, **BANK)
    assert all(r["errors"] > 0 for r in network["rows"])


async def test_parameters_reach_the_query(client: Any, analyst: dict[str, str]) -> None:
    """On ``tiny`` (conftest): a pays 1 h after signup, b (merged with u-b) 2 days after, c never."""
    tiny = {"app": "tiny", "from": "2026-11-19", "to": "2026-11-25"}
    one_day = await get(client, "funnel", analyst, **tiny, steps="signup,pay", window_days=1)
    assert [s["count"] for s in one_day["groups"][0]["steps"]] == [3, 1]
    body = {**tiny, "steps": ["signup", "pay"], "window_days": 3}
    resp = await client.post(f"{R}/funnel", json=body, headers=analyst)
    three_days = (await resp.json())["result"]
    assert [s["count"] for s in three_days["groups"][0]["steps"]] == [3, 2]
    steps = [
        {"event": "signup"},
        {"event": "pay", "filters": [{"field": "properties.amount_fen", "op": "gt", "value": 600}]},
    ]
    resp = await client.post(f"{R}/funnel", json={**body, "steps": steps}, headers=analyst)
    assert [s["count"] for s in (await resp.json())["result"]["groups"][0]["steps"]] == [3, 1]
    paid = await get(client, "active-users", analyst, **tiny, filter="event=pay")
    # pay: a on 11-20 (local), b on 11-22
    assert {d["day"]: d["dau"] for d in paid["days"] if d["dau"]} == {"2026-11-20": 1, "2026-11-22": 1}
    utc = await get(
        client, "active-users", analyst, app="tiny", **{"from": "2026-11-20", "to": "2026-11-20"}, tz="UTC"
    )
    assert [d["dau"] for d in utc["days"]] == [2]
    last = await get(client, "active-users", analyst, app="tiny", last_days=3)
    assert [d["day"] for d in last["days"]] == ["2026-11-28", "2026-11-29", "2026-11-30"]


BAD = [
    ("funnel", {"app": "bank", "steps": "a"}, "steps"),
    ("funnel", {"app": "bank"}, "steps"),
    ("funnel", {"app": "bank", "steps": "a,b", "window_days": "0"}, "window_days"),
    ("retention", {"app": "bank", "periods": "x"}, "periods"),
    ("retention", {"app": "bank", "mode": "weekly"}, "mode"),
    ("events", {"app": "bank", "interval": "minute"}, "interval"),
    ("events", {"app": "bank", "breakdown": "secret_column"}, "breakdown"),
    ("active-users", {"app": "bank", "from": "2026-13-01"}, "from"),
    ("active-users", {"app": "bank", "from": "2026-11-20", "to": "2026-11-01"}, "to"),
    ("active-users", {"app": "bank", "from": "2020-01-01", "to": "2026-01-01"}, "from"),
    ("active-users", {"app": "bank", "last_days": "7", "from": "2026-11-01"}, "last_days"),
    ("active-users", {"app": "bank", "tz": "Mars/Olympus"}, "time zone"),
    ("active-users", {"app": "bank", "filter": "no operator"}, "filter"),
    ("active-users", {"app": "bank", "colour": "red"}, "colour"),
    ("active-users", {}, "app"),
    ("adoption", {"app": "bank"}, "package_id"),
    ("adoption", {"app": "bank", "package_id": "../etc"}, "package_id"),
    ("paths", {"app": "bank", "event": "x'; DROP TABLE events; --"}, "event"),
]


async def test_bad_parameters_are_400(client: Any, analyst: dict[str, str]) -> None:
    for kind, params, word in BAD:
        resp = await client.get(f"{R}/{kind}", params=params, headers=analyst)
        assert resp.status == 400, (kind, params, await resp.text())
        body = await resp.json()
        assert_error(body, "invalid_report_parameter")
        assert word in body["error"]["message"], (kind, params, body)
    for body in (
        [1, 2],
        {"app": "bank", "steps": [{"event": "a", "extra": 1}, "b"]},
        {"app": "bank", "steps": 3},
    ):
        resp = await client.post(f"{R}/funnel", json=body, headers=analyst)
        assert resp.status == 400, (body, await resp.text())
    resp = await client.post(f"{R}/funnel", data=b"{not json", headers=analyst)
    assert_error(await resp.json(), "invalid_json")
    resp = await client.get(f"{R}/no-such-kind", params={"app": "bank"}, headers=analyst)
    assert resp.status == 404


async def test_every_kind_is_in_the_openapi_document(client: Any) -> None:
    doc = await (await client.get("/api/openapi.json")).json()
    from mpaas.analytics.reports.kinds import KINDS

    for name, kind in KINDS.items():
        post = doc["paths"][f"{R}/{name}"]["post"]
        schema = post["requestBody"]["content"]["application/json"]["schema"]
        roles = ["admin", "analyst", "release-manager"] if name == "adoption" else ["admin", "analyst"]
        assert schema == kind.schema() and post["x-roles"] == roles
        query = {p["name"] for p in doc["paths"][f"{R}/{name}"]["get"]["parameters"]}
        assert query == set(kind.schema()["properties"])
    funnel = KINDS["funnel"].schema()["properties"]
    assert funnel["window_days"]["maximum"] == 366 and "pattern" in funnel["from"]
    assert KINDS["retention"].schema()["properties"]["mode"]["enum"] == ["classic", "on_or_after"]
