"""The CLI end to end against a real server process, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpaas.settings import Settings
from tests_support import free_port

MPAAS = [sys.executable, "-m", "mpaas.cli.main"]


def run_cli(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*MPAAS, *args], env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"server exited with {proc.returncode}: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("server did not become healthy")


@pytest.fixture
def cli_env(settings: Settings, tmp_path: Path) -> Iterator[dict[str, str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPAAS_")}
    env |= {
        "MPAAS_DATA_DIR": str(settings.data_dir),
        "MPAAS_DATABASE_URL": settings.database_url,
        "MPAAS_PORT": str(port),
        "MPAAS_CONFIG_HOME": str(tmp_path / "cfg"),
        "MPAAS_LOG_JSON": "false",
    }
    yield env


def test_operator_and_admin_flow(cli_env: dict[str, str]) -> None:
    token = run_cli(["init"], cli_env).stdout.strip()
    assert token.startswith("mpaas_")
    again = run_cli(["init"], cli_env)
    assert again.stdout == "" and "already initialised" in again.stderr
    run_cli(["db", "upgrade"], cli_env)

    server = subprocess.Popen(
        [*MPAAS, "server"], env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{cli_env['MPAAS_PORT']}"
    try:
        wait_healthy(url, server)
        env = cli_env | {"MPAAS_SERVER": url}
        no_token = run_cli(["apps", "list"], env, check=False)
        assert no_token.returncode == 3 and no_token.stderr.startswith("error: not logged in")

        login = run_cli(["login", "--server", url, "--token", token], env)
        assert "logged in" in login.stderr
        rm = run_cli(["tokens", "create", "--role", "release-manager"], env).stdout.strip()
        assert rm.startswith("mpaas_") and "\n" not in rm

        created = run_cli(
            ["apps", "create", "bank", "--platform", "ios", "--platform", "android", "--json"], env
        )
        assert json.loads(created.stdout)["name"] == "bank"

        rm_env = env | {"MPAAS_TOKEN": rm}
        channels = json.loads(run_cli(["channels", "list", "--app", "bank", "--json"], rm_env).stdout)
        assert {c["name"] for c in channels["items"]} == {"staging", "production"}
        assert all(c["deployment_key"] for c in channels["items"])

        denied = run_cli(["apps", "create", "other", "--platform", "ios"], rm_env, check=False)
        assert denied.returncode == 3
        assert (
            denied.stderr.count("\n") == 1
            and "forbidden" in denied.stderr
            and "Traceback" not in denied.stderr
        )

        dup = run_cli(["apps", "create", "bank", "--platform", "ios"], env, check=False)
        assert dup.returncode == 1 and "already exists" in dup.stderr

        listing = run_cli(["tokens", "list", "--json"], env)
        rm_id = next(t["id"] for t in json.loads(listing.stdout)["items"] if t["role"] == "release-manager")
        run_cli(["tokens", "revoke", str(rm_id)], env)
        revoked = run_cli(["channels", "list", "--app", "bank"], rm_env, check=False)
        assert revoked.returncode == 3 and "invalid or revoked" in revoked.stderr

        audit = json.loads(run_cli(["audit", "list", "--json"], env).stdout)
        assert {"app.create", "token.create", "token.revoke"} <= {e["action"] for e in audit["items"]}
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_unreachable_server_is_one_line(tmp_path: Path) -> None:
    env = dict(os.environ) | {
        "MPAAS_SERVER": f"http://127.0.0.1:{free_port()}",
        "MPAAS_TOKEN": "x",
        "MPAAS_CONFIG_HOME": str(tmp_path),
    }
    proc = run_cli(["apps", "list"], env, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: cannot reach the mpaas server") and proc.stderr.count("\n") == 1


def test_second_server_on_a_taken_port_fails_loudly(cli_env: dict[str, str]) -> None:
    """Regression: with SO_REUSEPORT always on, a second server silently shared the port."""
    first = subprocess.Popen(
        [*MPAAS, "server"], env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_healthy(f"http://127.0.0.1:{cli_env['MPAAS_PORT']}", first)
        second = subprocess.run([*MPAAS, "server"], env=cli_env, capture_output=True, text=True, timeout=60)
        assert second.returncode != 0
        assert "Traceback" not in second.stderr
        assert "address already in use" in second.stderr.lower() or "error" in second.stderr.lower()
    finally:
        first.terminate()
        first.wait(timeout=20)
