"""The risk admin API and `mpaas risk …`: refusals are clear 4xx answers, roles hold, and
rule sets and lists round-trip through the CLI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from click.testing import CliRunner, Result

from mpaas.cli.main import cli
from tests_support import assert_error

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
RULES = "/api/v1/risk/rulesets"


def body(expr: str, **extra: Any) -> dict[str, Any]:
    rule = {"name": "r1", "expr": expr, "weight": 60, "message": "m"}
    return {"thresholds": {"challenge": 50, "deny": 100}, "rules": [rule]} | extra


BAD = [
    (body("txn.amount > "), "rule 'r1' does not compile"),
    (body("txn.amount > 1 &&& true"), "rule 'r1' does not compile"),
    (body("amount > 1"), "unknown variable(s) amount"),
    (body("true", scene="Bad Scene"), "a scene name must match"),
    (body("true") | {"thresholds": {"challenge": 1}}, "exactly 'challenge' and 'deny'"),
    ([1, 2], "must be a JSON object"),
]


async def test_a_bad_rule_set_is_refused_with_a_clear_400(
    client: TestClient,  # type: ignore[type-arg]
    admin_headers: dict[str, str],
) -> None:
    for payload, fragment in BAD:
        resp = await client.post(RULES, json=payload, headers=admin_headers)
        assert resp.status == 400, payload
        error = await resp.json()
        assert error["error"]["code"] in ("invalid_ruleset", "validation_error")
        assert fragment in error["error"]["message"]
    versions = await (await client.get(RULES, headers=admin_headers)).json()
    assert versions["items"] == []


async def test_only_an_admin_changes_rules_and_lists(
    client: TestClient,  # type: ignore[type-arg]
    token_factory: Callable[[str], Any],
) -> None:
    analyst = {"Authorization": f"Bearer {await token_factory('analyst')}"}
    resp = await client.post(RULES, json=body("true"), headers=analyst)
    assert resp.status == 403
    entry = {"kind": "deny", "entity": "device", "value": "d_1"}
    assert (await client.post("/api/v1/risk/lists", json=entry, headers=analyst)).status == 403
    shown = await client.get(RULES + "/transfer/active", headers=analyst)
    assert shown.status == 200 and (await shown.json())["label"].startswith("transfer@default-")


async def test_list_entries_are_added_refused_twice_and_removed(
    client: TestClient,  # type: ignore[type-arg]
    admin_headers: dict[str, str],
) -> None:
    entry = {"kind": "deny", "entity": "counterparty", "value": "c_mule", "reason": "mule ring"}
    assert (await client.post("/api/v1/risk/lists", json=entry, headers=admin_headers)).status == 201
    again = await client.post("/api/v1/risk/lists", json=entry, headers=admin_headers)
    assert again.status == 409
    assert_error(await again.json(), "list_entry_exists")
    bad = await client.post("/api/v1/risk/lists", json=entry | {"entity": "planet"}, headers=admin_headers)
    assert bad.status == 400
    assert_error(await bad.json(), "invalid_list_entry")
    path = "/api/v1/risk/lists/deny/counterparty/c_mule"
    assert (await client.delete(path, headers=admin_headers)).status == 204
    assert (await client.delete(path, headers=admin_headers)).status == 404
    assert (await (await client.get("/api/v1/risk/lists", headers=admin_headers)).json())["items"] == []


async def run(client: TestClient, headers: dict[str, str], tmp_path: Path, *args: str) -> Result:  # type: ignore[type-arg]
    environ = {
        "MPAAS_SERVER": str(client.make_url("")).rstrip("/"),
        "MPAAS_TOKEN": headers["Authorization"].removeprefix("Bearer "),
        "MPAAS_CONFIG_HOME": str(tmp_path / "cfg"),
    }
    # The CLI runs its own event loop, so it runs in a thread next to the test's server.
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=environ, catch_exceptions=False)


async def test_rules_are_loaded_and_shown_from_the_cli(
    client: TestClient,  # type: ignore[type-arg]
    admin_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "scene: transfer\nthresholds: {challenge: 40, deny: 80}\nrules:\n"
        "  - {name: large, expr: 'txn.amount >= 1000000', weight: 40, message: ten thousand yuan or more}\n"
    )
    loaded = await run(client, admin_headers, tmp_path, "risk", "rules", "load", str(rules))
    assert loaded.exit_code == 0 and "stored draft transfer@1 (1 rules)" in loaded.output
    shown = await run(client, admin_headers, tmp_path, "risk", "rules", "show", "--version", "1", "--json")
    assert json.loads(shown.output)["document"]["rules"][0]["name"] == "large"

    rules.write_text(rules.read_text().replace(">= 1000000", ">= "))
    refused = await run(client, admin_headers, tmp_path, "risk", "rules", "load", str(rules))
    assert refused.exit_code != 0
    listed = await run(client, admin_headers, tmp_path, "risk", "rules", "list", "--json")
    assert [v["label"] for v in json.loads(listed.output)["items"]] == ["transfer@1"]

    added = await run(client, admin_headers, tmp_path, "risk", "lists", "add", "deny", "ip", "198.51.100.9")
    assert added.exit_code == 0
    table = await run(client, admin_headers, tmp_path, "risk", "lists", "list")
    assert "198.51.100.9" in table.output
