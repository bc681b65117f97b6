"""The CLI end to end against a real server process, on SQLite and on PostgreSQL.

`cli` runs `mpaas` as a subprocess where the process is the point (exit codes, one-line
errors on stderr); `mpaas` runs the same command group in-process, a second of CPU cheaper.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from mpaas.settings import Settings
from tests_support import MPAAS, Server, cli, cli_env, free_port
from tests_support import cli_in_process as mpaas


@pytest.fixture
def operator_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return cli_env(settings.data_dir, settings.database_url, tmp_path)


def test_operator_and_admin_flow(operator_env: dict[str, str]) -> None:
    token = cli(["init"], operator_env).stdout.strip()
    assert token.startswith("mpaas_")
    again = mpaas(["init"], operator_env)
    assert again.stdout == "" and "already initialised" in again.stderr
    mpaas(["db", "upgrade"], operator_env)

    server = Server(operator_env)
    server.start()
    url = server.url
    try:
        env = operator_env | {"MPAAS_SERVER": url}
        no_token = cli(["apps", "list"], env, check=False)
        assert no_token.returncode == 3 and no_token.stderr.startswith("error: not logged in")

        login = mpaas(["login", "--server", url, "--token", token], env)
        assert "logged in" in login.stderr
        rm = mpaas(["tokens", "create", "--role", "release-manager"], env).stdout.strip()
        assert rm.startswith("mpaas_") and "\n" not in rm

        created = mpaas(
            ["apps", "create", "bank", "--platform", "ios", "--platform", "android", "--json"], env
        )
        assert json.loads(created.stdout)["name"] == "bank"

        rm_env = env | {"MPAAS_TOKEN": rm}
        channels = json.loads(mpaas(["channels", "list", "--app", "bank", "--json"], rm_env).stdout)
        assert {c["name"] for c in channels["items"]} == {"staging", "production"}
        assert all(c["deployment_key"] for c in channels["items"])

        denied = cli(["apps", "create", "other", "--platform", "ios"], rm_env, check=False)
        assert denied.returncode == 3
        assert (
            denied.stderr.count("\n") == 1
            and "forbidden" in denied.stderr
            and "Traceback" not in denied.stderr
        )

        dup = mpaas(["apps", "create", "bank", "--platform", "ios"], env, check=False)
        assert dup.returncode == 1 and "already exists" in dup.stderr

        listing = mpaas(["tokens", "list", "--json"], env)
        rm_id = next(t["id"] for t in json.loads(listing.stdout)["items"] if t["role"] == "release-manager")
        mpaas(["tokens", "revoke", str(rm_id)], env)
        revoked = mpaas(["channels", "list", "--app", "bank"], rm_env, check=False)
        assert revoked.returncode == 3 and "invalid or revoked" in revoked.stderr

        audit = json.loads(mpaas(["audit", "list", "--json"], env).stdout)
        assert {"app.create", "token.create", "token.revoke"} <= {e["action"] for e in audit["items"]}
    finally:
        server.stop()


def test_unreachable_server_is_one_line(tmp_path: Path) -> None:
    env = dict(os.environ) | {
        "MPAAS_SERVER": f"http://127.0.0.1:{free_port()}",
        "MPAAS_TOKEN": "x",
        "MPAAS_CONFIG_HOME": str(tmp_path),
    }
    proc = cli(["apps", "list"], env, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: cannot reach the mpaas server") and proc.stderr.count("\n") == 1


def test_second_server_on_a_taken_port_fails_loudly(operator_env: dict[str, str]) -> None:
    """Regression: with SO_REUSEPORT always on, a second server silently shared the port."""
    first = Server(operator_env)
    first.start()
    try:
        second = subprocess.run(
            [*MPAAS, "server"], env=operator_env, capture_output=True, text=True, timeout=60
        )
        assert second.returncode != 0
        assert "Traceback" not in second.stderr
        assert "address already in use" in second.stderr.lower() or "error" in second.stderr.lower()
    finally:
        first.stop()
