"""`mpaas login`, `logout`, `whoami`, `config show` and token expiry against a real server process.

The server is a subprocess; the CLI runs in-process through CliRunner (the same `cli`
group `mpaas` runs) to keep the test fast, except where a subprocess is the point.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner, Result

from mpaas.cli.main import cli as mpaas_cli
from mpaas.identity.models import ApiToken
from mpaas.settings import Settings
from mpaas.storage.db import Database, utcnow
from tests_support import Server, cli


def run(args: list[str], env: dict[str, str | None], code: int = 0) -> Result:
    result = CliRunner().invoke(mpaas_cli, args, env=env)
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def isolated(env: dict[str, str]) -> dict[str, str | None]:
    """``env`` for CliRunner, with every other MPAAS_* variable of this process unset."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MPAAS_")}
    return unset | dict(env)


def test_login_without_a_scheme_is_a_usage_error_that_suggests_the_fix(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPAAS_")}
    env["MPAAS_CONFIG_HOME"] = str(tmp_path / "cfg")
    proc = cli(["login", "--server", "127.0.0.1:8080", "--token", "mpaas_x"], env, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "use http://127.0.0.1:8080" in proc.stderr
    other = run(["login", "--server", "localhost:8080", "--token", "x"], isolated({}), code=2)
    assert "use http://localhost:8080" in other.stderr
    assert not (tmp_path / "cfg").exists()


def test_bad_server_in_the_environment_is_a_usage_error(tmp_path: Path) -> None:
    env = {"MPAAS_SERVER": "127.0.0.1:8080", "MPAAS_TOKEN": "t", "MPAAS_CONFIG_HOME": str(tmp_path)}
    result = run(["apps", "list"], isolated(env), code=2)
    assert "MPAAS_SERVER" in result.stderr and "http://127.0.0.1:8080" in result.stderr


async def expire_now(settings: Settings, token_id: int) -> None:
    """Test setup: move a token's expiry into the past (no waiting on a clock)."""
    db = Database(settings)
    try:
        async with db.write() as s:
            row = await s.get(ApiToken, token_id)
            assert row is not None
            row.expires_at = utcnow() - timedelta(seconds=1)
            s.add(row)
    finally:
        await db.close()


def test_login_whoami_config_show_logout_and_token_expiry(
    server_env: tuple[Server, dict[str, str]], settings: Settings
) -> None:
    server, full_env = server_env
    token = full_env["MPAAS_TOKEN"]
    env = isolated(full_env) | {"MPAAS_TOKEN": None, "MPAAS_SERVER": None}
    env["MPAAS_METRICS_TOKEN"] = "s3cret-metrics"

    login = run(["login", "--server", server.url + "/", "--token", token], env)
    assert f"logged in to {server.url} as admin (admin)" in login.stderr

    me = json.loads(run(["whoami", "--json"], env).stdout)
    assert (me["server"], me["name"], me["role"]) == (server.url, "admin", "admin")
    human = run(["whoami"], env).stdout.splitlines()
    assert f"server: {server.url}" in human and "name: admin" in human and "role: admin" in human

    shown = json.loads(run(["config", "show", "--json"], env).stdout)
    assert shown["tuf_key_type"] == "ecdsa"  # regression: masked because the name contains "key"
    assert shown["metrics_token"] == "***"
    assert (shown["cli_server"], shown["cli_user"]) == (server.url, "admin (admin)")
    masked = run(["config", "show", "--database-url", "postgresql://u:pw@db.example/m"], env).stdout
    assert "database_url: postgresql+asyncpg://u:***@db.example/m" in masked.splitlines()
    assert "s3cret-metrics" not in masked and ":pw@" not in masked

    # token expiry: --expires, shown in `tokens list` and whoami, enforced as 401 token_expired
    created = json.loads(
        run(["tokens", "create", "--role", "analyst", "--expires", "90d", "--json"], env).stdout
    )
    forever = json.loads(run(["tokens", "create", "--role", "analyst", "--json"], env).stdout)
    assert created["expires_at"] is not None and forever["expires_at"] is None
    listing = {t["id"]: t for t in json.loads(run(["tokens", "list", "--json"], env).stdout)["items"]}
    assert listing[created["id"]]["expires_at"] == created["expires_at"]
    table = run(["tokens", "list"], env).stdout
    assert "EXPIRES_AT" in table.splitlines()[0] and created["expires_at"][:10] in table
    analyst = env | {"MPAAS_TOKEN": created["token"]}
    assert json.loads(run(["whoami", "--json"], analyst).stdout)["expires_at"] == created["expires_at"]
    asyncio.run(expire_now(settings, created["id"]))
    expired = run(["whoami"], analyst, code=3)
    assert "token_expired" in expired.stderr and expired.stderr.count("\n") == 1
    run(["whoami"], env | {"MPAAS_TOKEN": forever["token"]})
    bad = run(["tokens", "create", "--role", "analyst", "--expires", "90 days"], env, code=2)
    assert "90d" in bad.stderr

    out = run(["logout"], env)
    assert f"logged out of {server.url} as admin (admin)" in out.stderr and "removed" in out.stderr
    assert json.loads(run(["config", "show", "--json"], env).stdout)["cli_user"] is None
    assert "not logged in" in run(["whoami"], env, code=3).stderr
    assert run(["logout"], env).stderr.startswith("not logged in: nothing stored in")
