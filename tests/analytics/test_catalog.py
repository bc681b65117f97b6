"""The event catalogue, write keys and forgetting a user: CLI and admin API, roles, and the effect at load."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from click.testing import CliRunner
from sqlmodel import select

from mpaas.appkeys import DB
from mpaas.cli.main import cli
from mpaas.identity.models import AuditEntry


async def run_cli(client: Any, token: str, *args: str) -> Any:
    """The real CLI (click, in a thread with its own event loop) against the test server."""
    env = {"MPAAS_SERVER": str(client.make_url("")).rstrip("/"), "MPAAS_TOKEN": token}
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "--json" in args else result.stdout


SCHEMA = {"type": "object", "required": ["amount"], "properties": {"amount": {"type": "integer"}}}


async def test_define_list_show_with_roles_and_audit(
    client: Any, keys: dict[str, str], token_factory: Any
) -> None:
    analyst = await token_factory("analyst")
    out = await run_cli(
        client, analyst, "events", "define", "Transfer Confirmed", "--app", "bank", "--schema", json.dumps(SCHEMA),
        "--mode", "warn", "--owner", "payments", "--allow-pii", "payee.phone", "--json",
    )  # fmt: skip
    assert (out["name"], out["mode"], out["pii_allowed"]) == ("Transfer Confirmed", "warn", ["payee.phone"])
    listing = await run_cli(client, analyst, "events", "list", "--app", "bank", "--builtin", "--json")
    assert [d["name"] for d in listing["items"]] == ["Transfer Confirmed"]
    assert {d["name"] for d in listing["builtin"]} >= {
        "ux.app_start",
        "ux.crash",
        "ux.h5_perf",
        "ux.push_opened",
    }
    crash = await run_cli(client, analyst, "events", "show", "ux.crash", "--app", "bank", "--json")
    assert crash["builtin"] and "fingerprint" in crash["properties_schema"]["required"]

    headers = {"Authorization": f"Bearer {analyst}"}
    bad = [
        ("ux.mine", {}),
        ("ok", {"properties_schema": {"type": "nope"}}),
        ("ok", {"mode": "reject", "properties_schema": {"type": "object"}}),
        ("ok", {"mode": "sometimes"}),
        ("ok", {"pii_allowed": ["a b"]}),
    ]
    for name, body in bad:
        resp = await client.put(f"/api/v1/apps/bank/events/{name}", json=body, headers=headers)
        assert resp.status == 400, (name, body)
        assert (await resp.json())["error"]["code"] == "invalid_event_definition"
    releaser = {"Authorization": f"Bearer {await token_factory('release-manager')}"}
    resp = await client.put("/api/v1/apps/bank/events/x", json={}, headers=releaser)
    assert resp.status == 403
    resp = await client.get("/api/v1/apps/bank/events/missing", headers=headers)
    assert resp.status == 404
    async with client.app[DB].session() as s:
        actions = (await s.exec(select(AuditEntry.action))).all()
    assert "analytics.event.define" in actions


async def test_catalogue_modes_apply_at_load_and_nothing_is_dropped(
    client: Any, keys: dict[str, str], admin_headers: dict[str, str], basic: Any, load: Any
) -> None:
    strict = {"type": "object", "properties": {"a": {"type": "string"}, "payee": {"type": "object"}}}
    for name, body in {
        "Paid": {"mode": "warn", "properties_schema": SCHEMA},
        "Strict": {"mode": "reject", "properties_schema": strict, "pii_allowed": ["payee.phone"]},
    }.items():
        resp = await client.put(f"/api/v1/apps/bank/events/{name}", json=body, headers=admin_headers)
        assert resp.status == 201, await resp.text()
    events = [
        ("Paid", {"amount": "ten"}),
        ("Strict", {"a": "x", "b": "secret", "payee": {"phone": "13812345678"}, "note": None}),
        ("Other", {"phone": "13812345678"}),
        ("ux.app_start", {"start_type": "cold"}),
    ]
    batch = [
        {"type": "track", "event": e, "userId": "u", "messageId": f"c{i}", "properties": p}
        for i, (e, p) in enumerate(events)
    ]
    resp = await client.post("/v1/batch", json={"batch": batch}, headers=basic(keys["write"]))
    assert resp.status == 200
    store = await load()
    rows = {e: (json.loads(p), f) for e, p, f in store.fetch("SELECT event, properties, flags FROM events")}
    assert rows["Paid"] == ({"amount": "ten"}, ["schema:amount: 'ten' is not of type 'integer'"])
    assert rows["Strict"] == (
        {"a": "x", "payee": {"phone": "13812345678"}},  # allowed: not masked
        ["removed:b", "removed:note"],
    )
    assert rows["Other"] == ({"phone": "[masked:mobile]"}, ["undeclared", "masked:mobile"])
    assert rows["ux.app_start"][1] == ["schema:'duration_ms' is a required property"]


async def test_write_keys_create_list_rotate(client: Any, keys: dict[str, str], basic: Any) -> None:
    admin = keys["admin_token"]
    created = await run_cli(
        client, admin, "analytics", "write-keys", "create", "--app", "bank", "--label", "ios", "--json"
    )
    listing = await run_cli(client, admin, "analytics", "write-keys", "list", "--app", "bank", "--json")
    assert {k["label"] for k in listing["items"]} == {"", "ios"}
    assert all("write_key" not in k for k in listing["items"])  # never shown again
    rotated = await run_cli(
        client, admin, "analytics", "write-keys", "rotate", "--app", "bank", "--grace", "0", "--json"
    )
    assert len(rotated["expiring"]) == 2
    one = {"batch": [{"type": "track", "event": "e", "userId": "u", "messageId": "w1"}]}
    for old in (keys["write"], created["write_key"]):
        resp = await client.post("/v1/batch", json=one, headers=basic(old))
        assert resp.status == 401
    resp = await client.post("/v1/batch", json=one, headers=basic(rotated["key"]["write_key"]))
    assert resp.status == 200


async def test_forget_a_user_deletes_events_links_and_spooled_events(
    client: Any, keys: dict[str, str], admin_headers: dict[str, str], basic: Any, load: Any
) -> None:
    def ev(mid: str, **who: Any) -> dict[str, Any]:
        return {"type": "track", "event": "e", "messageId": mid} | who

    async def send(events: list[dict[str, Any]]) -> None:
        resp = await client.post("/v1/batch", json={"batch": events}, headers=basic(keys["write"]))
        assert resp.status == 200

    await send(
        [
            ev("1", userId="u1"),
            {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "2"},
            ev("3", anonymousId="a1"),
            ev("4", userId="u2"),
        ]
    )
    store = await load()
    assert store.fetch("SELECT count(*) FROM events") == [(4,)]
    await send([ev("5", userId="u1"), ev("6", userId="u2")])  # spooled, not loaded yet
    admin = keys["admin_token"]
    out = await run_cli(client, admin, "analytics", "forget", "--user", "u1", "--app", "bank", "--json")
    assert out["done"] is False  # recorded; the loader carries it out
    await send([ev("7", userId="u1")])  # received after the request: a new consent
    store = await load()
    assert sorted(r[0] for r in store.fetch("SELECT message_id FROM events")) == ["4", "6", "7"]
    assert store.fetch("SELECT count(*) FROM identity_links") == [(0,)]
    status = await (await client.get(f"/api/v1/analytics/forget/{out['id']}", headers=admin_headers)).json()
    assert status["done"] and status["events_deleted"] == 3 and status["links_deleted"] == 1
    async with client.app[DB].session() as s:
        entry = (await s.exec(select(AuditEntry).where(AuditEntry.action == "analytics.forget"))).one()
    assert entry.app == "bank" and "u1" not in json.dumps(entry.detail)
    status = await run_cli(client, admin, "analytics", "status", "--json")
    assert status["spool"] == "files" and status["loader_here"] and status["loader"]["forgotten"] == 1
