"""`mpaas risk …` for the decision centre: four eyes, diff, history, CSV import, cases,
shadow and backtest round-trip through the CLI, and refusals are one line and non-zero."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from click.testing import CliRunner, Result

from mpaas.banking.risk.decision import RiskContext
from mpaas.banking.risk.engine import CelRiskEngine
from mpaas.cli.main import cli

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def runner(client: TestClient, tmp_path: Path, token: str) -> Callable[..., Any]:  # type: ignore[type-arg]
    environ = {
        "MPAAS_SERVER": str(client.make_url("")).rstrip("/"),
        "MPAAS_TOKEN": token,
        "MPAAS_CONFIG_HOME": str(tmp_path / "cfg"),
    }

    async def run(*args: str) -> Result:
        # The CLI runs its own event loop, so it runs in a thread next to the test's server.
        return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=environ)

    return run


async def test_the_review_flow_lists_cases_shadow_and_backtest_from_the_cli(
    client: TestClient,  # type: ignore[type-arg]
    token_factory: Callable[[str], Any],
    engine: CelRiskEngine,
    transfer: Callable[..., RiskContext],
    tmp_path: Path,
) -> None:
    alice = runner(client, tmp_path, await token_factory("admin"))
    bob = runner(client, tmp_path, await token_factory("admin"))
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "scene: transfer\nthresholds: {challenge: 40, review: 60, deny: 100}\nrules:\n"
        "  - {name: large, expr: 'txn.amount >= 1000000', weight: 70, message: ten thousand yuan or more}\n"
    )
    assert (await alice("risk", "rules", "load", str(rules))).exit_code == 0
    assert "submitted transfer@1" in (await alice("risk", "rules", "submit", "1")).output
    own = await alice("risk", "rules", "approve", "1")
    assert own.exit_code != 0 and "four eyes" in own.output and "Traceback" not in own.output
    assert (await bob("risk", "rules", "approve", "1")).exit_code == 0
    assert "activated transfer@1 (now active)" in (await bob("risk", "rules", "activate", "1")).output
    rules.write_text(rules.read_text().replace("1000000", "2000000"))
    assert (await alice("risk", "rules", "load", str(rules))).exit_code == 0
    diff = await alice("risk", "rules", "diff", "1", "2")
    assert "~ large.expr: txn.amount >= 1000000 -> txn.amount >= 2000000" in diff.output
    history = json.loads((await alice("risk", "rules", "history", "1", "--json")).output)
    assert [h["action"] for h in history["items"]][-1] == "risk.ruleset.activate"

    csv = tmp_path / "lists.csv"
    csv.write_text("kind,entity,value,reason,expires_at\ndeny,card_bin,622202,skimmed,\nwatch,ip,bad ip,,\n")
    refused = await alice("risk", "lists", "import", str(csv))
    assert refused.exit_code != 0 and "line 3: value must be" in refused.output
    csv.write_text("kind,entity,value,reason,expires_at\ndeny,card_bin,622202,skimmed,\n")
    assert "imported 1 entries" in (await alice("risk", "lists", "import", str(csv))).output

    assert (await alice("risk", "shadow", "set", "transfer", "2")).exit_code == 0
    held = await engine.decide("transfer", transfer("t1", 15_000 * 100))
    await engine.drain()
    assert held.action == "review"
    report = await alice("risk", "shadow", "report", "transfer")
    assert "shadow transfer@2: 1 of 1 decisions disagree" in report.output

    cases = json.loads((await alice("risk", "cases", "list", "--status", "open", "--json")).output)
    assert [c["decision_id"] for c in cases["items"]] == [held.id]
    case = str(cases["items"][0]["id"])
    assert "labelled fraud" in (await alice("risk", "cases", "label", case, "fraud", "--note", "ATO")).output
    shown = json.loads((await alice("risk", "cases", "show", case, "--json")).output)
    assert (shown["label"], shown["note"], shown["decision"]["id"]) == ("fraud", "ATO", held.id)

    out = await alice("risk", "backtest", "--ruleset", "2", "--since", "2020-01-01T00:00:00Z", "--json")
    tested = json.loads(out.output)
    assert (tested["decisions"], tested["by_label"]["fraud"]["moves"]) == (1, {"review→allow": 1})
    assert "identical" in (await alice("risk", "replay", held.id)).output
    assert (await alice("risk", "shadow", "clear", "transfer")).exit_code == 0
