"""Apps and channels: rename, delete (confirmed, audited, refused while in use); scoped tokens; login."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from mpaas.appkeys import DB
from mpaas.cli.main import cli as mpaas_cli
from mpaas.identity.tenancy import resolve_deployment_key

Mpaas = Any  # the `mpaas` fixture of tests/cli/conftest.py


def test_login_with_a_positional_server_without_scheme_is_a_usage_error(tmp_path: Path) -> None:
    env = {"MPAAS_CONFIG_HOME": str(tmp_path / "cfg"), "MPAAS_SERVER": None, "MPAAS_TOKEN": None}
    result = CliRunner().invoke(mpaas_cli, ["login", "127.0.0.1:8080", "--token", "x"], env=env)
    assert result.exit_code == 2, result.output
    assert "use http://127.0.0.1:8080" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "cfg").exists()


async def channel_names(mpaas: Mpaas, app: str) -> set[str]:
    listed = json.loads((await mpaas("channels", "list", "--app", app, "--json")).stdout)["items"]
    return {c["name"] for c in listed}


async def test_rename_and_delete_apps_and_channels(mpaas: Mpaas, client: Any, admin_headers: Any) -> None:
    await mpaas("apps", "create", "typo", "--platform", "ios")
    await mpaas("channels", "create", "beta", "--app", "typo")
    keys = {
        c["name"]: c["deployment_key"]
        for c in json.loads((await mpaas("channels", "list", "--app", "typo", "--json")).stdout)["items"]
    }

    await mpaas("channels", "rename", "beta", "qa", "--app", "typo")
    renamed = json.loads((await mpaas("channels", "list", "--app", "typo", "--json")).stdout)["items"]
    assert {c["name"]: c["deployment_key"] for c in renamed}["qa"] == keys["beta"]  # the key stays

    # a delete asks first: no answer (no terminal) means no, and nothing is deleted
    refused = await mpaas("channels", "delete", "qa", "--app", "typo", code=1)
    assert "not confirmed" in refused.stderr and refused.stderr.strip().count("\n") <= 1
    assert await channel_names(mpaas, "typo") == {"production", "staging", "qa"}
    await mpaas("channels", "delete", "qa", "--app", "typo", "--yes")
    # by name, not by substring: a random deployment key in the table can contain "qa"
    assert await channel_names(mpaas, "typo") == {"production", "staging"}
    assert await resolve_deployment_key(client.app[DB], keys["beta"]) is None

    await mpaas("apps", "rename", "typo", "retail")
    shown = json.loads((await mpaas("apps", "show", "retail", "--json")).stdout)
    assert shown["name"] == "retail" and shown["require_signing"] is False
    await mpaas("apps", "show", "typo", code=1)
    taken = await mpaas("apps", "create", "bank", "--platform", "ios")
    assert "created app bank" in taken.stdout
    exists = await mpaas("apps", "rename", "retail", "bank", code=1)
    assert "app_exists" in exists.stderr

    await mpaas("apps", "delete", "retail", "--yes")
    assert json.loads((await mpaas("apps", "list", "--json")).stdout)["total"] == 1
    audit = json.loads((await mpaas("audit", "list", "--json", "--limit", "20")).stdout)["items"]
    actions = [e["action"] for e in audit]
    for action in ("channel.rename", "channel.delete", "app.rename", "app.delete"):
        assert action in actions


async def test_an_app_or_channel_with_history_is_not_deleted(
    mpaas: Mpaas, publish: Any, release: Any
) -> None:
    await publish({"a.js": b"1" * 100}, "1.0.0")
    await release("1.0.0", channel="staging")
    app = await mpaas("apps", "delete", "bank", "--yes", code=1)
    assert "app_in_use" in app.stderr and "HTTP 409" in app.stderr
    channel = await mpaas("channels", "delete", "staging", "--app", "bank", "--yes", code=1)
    assert "channel_in_use" in channel.stderr
    assert "staging" in (await mpaas("channels", "list", "--app", "bank")).stdout


async def test_scoped_tokens_act_only_on_their_apps(mpaas: Mpaas, client: Any) -> None:
    for name in ("bank", "card"):
        await mpaas("apps", "create", name, "--platform", "ios")
    created = json.loads(
        (await mpaas("tokens", "create", "--role", "release-manager", "--app", "bank", "--json")).stdout
    )
    assert created["apps"] == ["bank"]
    token = created["token"]
    assert (await mpaas("channels", "list", "--app", "bank", token=token)).stdout.count("\n") >= 3
    other = await mpaas("channels", "list", "--app", "card", token=token, code=3)
    assert "app_scope" in other.stderr and "HTTP 403" in other.stderr
    listed = json.loads((await mpaas("apps", "list", "--json", token=token)).stdout)
    assert [a["name"] for a in listed["items"]] == ["bank"] and listed["total"] == 1
    me = json.loads((await mpaas("whoami", "--json", token=token)).stdout)
    assert me["apps"] == ["bank"]
    assert "apps: all" in (await mpaas("whoami")).stdout
    # an endpoint about no single app is refused to a scoped token, even an admin's
    admin = json.loads((await mpaas("tokens", "create", "--role", "admin", "--app", "bank", "--json")).stdout)
    resp = await client.get("/api/v1/audit", headers={"Authorization": f"Bearer {admin['token']}"})
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "app_scope"
    assert "bank" in (await mpaas("tokens", "list")).stdout
    unknown = await mpaas("tokens", "create", "--role", "analyst", "--app", "nope", code=1)
    assert "app_not_found" in unknown.stderr
    # a rename carries the scope along
    await mpaas("apps", "rename", "bank", "bank2")
    assert json.loads((await mpaas("whoami", "--json", token=token)).stdout)["apps"] == ["bank2"]
