"""`mpaas operations …`, `mpaas banking …` and `mpaas gateway …` against a running server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner, Result
from gateway_support import Env, register

from mpaas.cli.main import cli


async def run(env: Env, admin: dict[str, str], tmp_path: Path, *args: str) -> Result:
    environ = {
        "MPAAS_SERVER": str(env.http.make_url("")).rstrip("/"),
        "MPAAS_TOKEN": admin["Authorization"].removeprefix("Bearer "),
        "MPAAS_CONFIG_HOME": str(tmp_path / "cfg"),
    }
    # The CLI runs its own event loop, so it runs in a thread next to the test's server.
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=environ, catch_exceptions=False)
    return result


async def test_operations_are_listed_added_shown_and_disabled_from_the_cli(
    env: Env, admin: dict[str, str], tmp_path: Path
) -> None:
    listed = await run(env, admin, tmp_path, "operations", "list")
    assert listed.exit_code == 0 and "mpaas.user.login" in listed.output and "built-in" in listed.output

    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"amount": {"type": "integer"}}}))
    added = await run(
        env,
        admin,
        tmp_path,
        "operations",
        "add",
        "com.bank.fx.quote",
        "--upstream",
        "http://127.0.0.1:9/quote",
        "--schema",
        str(schema),
        "--min-tier",
        "registered",
        "--rate",
        "10/m",
        "--idempotent",
        "--json",
    )
    assert added.exit_code == 0, added.output
    out = json.loads(added.output)
    assert (out["kind"], out["rate"], out["idempotent"], len(out["upstream_secret"])) == (
        "upstream",
        "10/m",
        True,
        64,
    )

    shown = await run(env, admin, tmp_path, "operations", "show", "com.bank.fx.quote", "--json")
    assert json.loads(shown.output)["input_schema"]["properties"]["amount"]["type"] == "integer"
    again = await run(
        env, admin, tmp_path, "operations", "add", "com.bank.fx.quote", "--upstream", "http://x/y"
    )
    assert again.exit_code == 1  # exists

    client = env.client()
    await register(env, client)
    assert (await client.call("mpaas.user.profile")).ok
    disabled = await run(env, admin, tmp_path, "operations", "disable", "mpaas.user.profile")
    assert disabled.exit_code == 0 and "disabled mpaas.user.profile v1" in disabled.output
    assert (await client.call("mpaas.user.profile")).code == 3000
    await run(env, admin, tmp_path, "operations", "enable", "mpaas.user.profile")
    assert (await client.call("mpaas.user.profile")).ok
    missing = await run(env, admin, tmp_path, "operations", "disable", "com.bank.none")
    assert missing.exit_code == 1 and "not found" in missing.output


async def test_catalogue_users_and_keys_from_the_cli(env: Env, admin: dict[str, str], tmp_path: Path) -> None:
    doc = tmp_path / "catalog.yaml"
    doc.write_text("products:\n  - {id: savings, title: Savings, min_tier: registered}\n")
    put = await run(env, admin, tmp_path, "banking", "catalog", "put", str(doc), "--app", "bank")
    assert put.exit_code == 0 and "catalogue v1 of bank: 0 mini-programs, 1 products" in put.output
    shown = await run(env, admin, tmp_path, "banking", "catalog", "show", "--app", "bank")
    assert "savings" in shown.output

    client = env.client()
    user_id = (await register(env, client))["user_id"]
    flagged = await run(env, admin, tmp_path, "banking", "users", "verify-branch", user_id, "--app", "bank")
    assert flagged.exit_code == 0
    user = json.loads(
        (
            await run(env, admin, tmp_path, "banking", "users", "show", user_id, "--app", "bank", "--json")
        ).output
    )
    assert (user["tier"], user["branch_verified"]) == ("registered", True)

    created = await run(env, admin, tmp_path, "gateway", "keys", "create", "--app", "bank", "--json")
    key = json.loads(created.output)
    keys = await run(env, admin, tmp_path, "gateway", "keys", "list", "--app", "bank")
    assert key["kid"] in keys.output and key["secret"] not in keys.output
    assert (
        await run(env, admin, tmp_path, "gateway", "keys", "revoke", key["kid"], "--app", "bank")
    ).exit_code == 0
