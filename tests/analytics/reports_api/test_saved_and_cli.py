"""Saved reports (API round trip, the journeys the demo seeds) and the CLI's --json and --csv."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from mpaas.analytics.demo.campaigns import PUSH_ID
from mpaas.analytics.demo.catalogue import JOURNEYS
from mpaas.analytics.demo.seed import save_journeys
from mpaas.appkeys import DB
from mpaas.identity.audit import Actor
from tests_support import assert_error

S = "/api/v1/analytics/saved-reports"
RANGE = ["--app", "bank", "--from", "2026-11-17", "--to", "2026-11-30"]

pytestmark = pytest.mark.usefixtures("apps")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
async def test_saved_report_round_trip(client: Any, analyst: dict[str, str]) -> None:
    body = {
        "app": "tiny",
        "name": "signup-to-pay",
        "kind": "funnel",
        "description": "first payment",
        "params": {"steps": ["signup", "pay"], "window_days": 1, "from": "2026-11-19", "to": "2026-11-25"},
    }
    resp = await client.post(S, json=body, headers=analyst)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["params"] == body["params"]
    run = await (await client.get(f"{S}/tiny/signup-to-pay/run", headers=analyst)).json()
    assert [s["count"] for s in run["result"]["groups"][0]["steps"]] == [3, 1]
    assert run["query"]["saved"] == "signup-to-pay"
    body["params"] = {**body["params"], "window_days": 3}
    resp = await client.post(S, json=body, headers=analyst)
    assert resp.status == 200
    run = await (await client.post(f"{S}/tiny/signup-to-pay/run", headers=analyst)).json()
    assert [s["count"] for s in run["result"]["groups"][0]["steps"]] == [3, 2]
    # a run may move the range: on 11-22 alone only b's payment is left, and nobody signs up
    resp = await client.post(
        f"{S}/tiny/signup-to-pay/run", json={"from": "2026-11-22", "to": "2026-11-22"}, headers=analyst
    )
    assert (await resp.json())["result"]["groups"] == []
    listing = await (await client.get(S, params={"app": "tiny", "kind": "funnel"}, headers=analyst)).json()
    assert [r["name"] for r in listing["items"]] == ["signup-to-pay"] and listing["total"] == 1
    shown = await (await client.get(f"{S}/tiny/signup-to-pay", headers=analyst)).json()
    assert (shown["kind"], shown["description"], shown["updated_by"][:6]) == (
        "funnel",
        "first payment",
        "token:",
    )
    resp = await client.delete(f"{S}/tiny/signup-to-pay", headers=analyst)
    assert resp.status == 204
    resp = await client.get(f"{S}/tiny/signup-to-pay", headers=analyst)
    assert resp.status == 404
    assert_error(await resp.json(), "saved_report_not_found")


async def test_saved_report_input_is_checked(client: Any, analyst: dict[str, str]) -> None:
    good = {"app": "tiny", "name": "x", "kind": "funnel", "params": {"steps": ["a", "b"]}}
    cases = [
        ({**good, "kind": "horoscope"}, "invalid_report_parameter"),
        ({**good, "params": {"steps": ["a"]}}, "invalid_report_parameter"),
        ({**good, "params": {"steps": ["a", "b"], "app": "bank"}}, "invalid_report_parameter"),
        ({**good, "name": "Has Spaces"}, "invalid_report_parameter"),
        ({**good, "params": "steps=a,b"}, "invalid_report_parameter"),
        ({**good, "owner": "me"}, "invalid_report_parameter"),
        ({**good, "app": "nope"}, "app_not_found"),
    ]
    for body, code in cases:
        resp = await client.post(S, json=body, headers=analyst)
        assert 400 <= resp.status < 500, (body, await resp.text())
        assert_error(await resp.json(), code)
    resp = await client.post(f"{S}/tiny/x/run", json={"steps": "a,b"}, headers=analyst)
    assert resp.status in (400, 404)


async def test_journeys_as_saved_funnels(client: Any, analyst: dict[str, str]) -> None:
    """The 12 core journeys the demo seeds, run over the demo's events."""
    assert await save_journeys(client.app[DB], Actor("cli:demo"), "bank") == 12
    assert await save_journeys(client.app[DB], Actor("cli:demo"), "bank") == 0  # never overwritten
    listing = await (await client.get(S, params={"app": "bank", "limit": 5}, headers=analyst)).json()
    assert listing["total"] == len(JOURNEYS) == 12 and listing["next_offset"] == 5
    run = await (
        await client.get(f"{S}/bank/journey.transfer/run", params={"from": "2026-11-17"}, headers=analyst)
    ).json()
    steps = run["result"]["groups"][0]["steps"]
    assert [s["event"] for s in steps] == list(JOURNEYS[0].steps)
    assert steps[0]["count"] > steps[-1]["count"] > 0


async def test_cli_json_csv_and_tables(client: Any, analyst: dict[str, str], run_cli: Any) -> None:
    token = analyst["Authorization"][7:]
    funnel = await run_cli(
        token, "analytics", "funnel", *RANGE, "--steps", "login.start,login.succeeded", "--json"
    )
    counts = [s["count"] for s in funnel["result"]["groups"][0]["steps"]]
    text = await run_cli(
        token, "analytics", "funnel", *RANGE, "--steps", "login.start,login.succeeded", "--csv"
    )
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["count"]) for r in rows] == counts and rows[0]["event"] == "login.start"
    table = await run_cli(token, "analytics", "funnel", *RANGE, "--steps", "login.start,login.succeeded")
    assert table.splitlines()[0].split()[:3] == ["STEP", "EVENT", "COUNT"] and "%" in table

    retention = await run_cli(token, "analytics", "retention", *RANGE, "--periods", "3", "--json")
    text = await run_cli(token, "analytics", "retention", *RANGE, "--periods", "3", "--csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["size"]) for r in rows] == [c["size"] for c in retention["result"]["cohorts"]]
    assert list(rows[0]) == ["cohort", "size", "d0", "d1", "d2"]

    dau = await run_cli(token, "analytics", "dau", *RANGE, "--json")
    text = await run_cli(token, "analytics", "dau", *RANGE, "--csv")
    assert [int(r["dau"]) for r in csv.DictReader(io.StringIO(text))] == [
        d["dau"] for d in dau["result"]["days"]
    ]

    adoption = await run_cli(
        token, "analytics", "report", "adoption", *RANGE, "--param", "package_id=transfer", "--json"
    )
    text = await run_cli(
        token, "analytics", "report", "adoption", *RANGE, "--param", "package_id=transfer", "--csv"
    )
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == sum(len(d["versions"]) for d in adoption["result"]["days"])

    push = await run_cli(
        token, "analytics", "report", "push", *RANGE, "--param", f"push_id={PUSH_ID}", "--json"
    )
    text = await run_cli(
        token, "analytics", "report", "push", *RANGE, "--param", f"push_id={PUSH_ID}", "--csv"
    )
    rows = list(csv.DictReader(io.StringIO(text)))
    sent = sum(r["sent"] for r in push["result"]["rows"])
    assert sent > 0 and sum(int(r["sent"]) for r in rows if r["provider"] != "*") == sent

    bad = await run_cli(token, "analytics", "report", "adoption", "--app", "bank", ok=False)
    assert bad.exit_code == 1 and bad.stderr.startswith("error: package_id") and "Traceback" not in bad.output


async def test_cli_saved_reports(client: Any, analyst: dict[str, str], run_cli: Any) -> None:
    token = analyst["Authorization"][7:]
    out = await run_cli(
        token, "analytics", "saved", "save", "signups", "--app", "tiny", "--kind", "events",
        "--param", "events=signup", "--param", "from=2026-11-19", "--param", "to=2026-11-21", "--json",
    )  # fmt: skip
    assert out["params"] == {"events": "signup", "from": "2026-11-19", "to": "2026-11-21"}
    listing = await run_cli(token, "analytics", "saved", "list", "--app", "tiny")
    assert "signups" in listing and "events" in listing
    text = await run_cli(token, "analytics", "saved", "run", "signups", "--app", "tiny", "--csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    # signups: a and b on 11-20 (local), c on 11-21
    assert [(r["bucket"][:10], r["events"]) for r in rows if r["events"] != "0"] == [
        ("2026-11-20", "2"),
        ("2026-11-21", "1"),
    ]
    await run_cli(token, "analytics", "saved", "delete", "signups", "--app", "tiny")
    gone = await run_cli(token, "analytics", "saved", "show", "signups", "--app", "tiny", ok=False)
    assert gone.exit_code == 1 and "saved_report_not_found" in gone.stderr
