"""`mpaas release` / `mpaas releases …` against a real server process, checked by update checks.

The CLI runs in-process (CliRunner): these tests are about what the commands do, and a
subprocess per command cost a second of CPU each.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from mpaas.packages.releases.rollout import bucket
from tests_support import Server
from tests_support import cli_in_process as mpaas


def cli_json(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    return dict(json.loads(mpaas([*args, "--json"], env).stdout))


def devices(seed: int, low: int, high: int, *, count: int = 1) -> list[str]:
    """Device ids whose bucket for ``seed`` lies in ``[low, high)`` basis points."""
    found = [d for d in (f"dev-{i}" for i in range(100_000)) if low <= bucket(d, seed) < high]
    assert len(found) >= count
    return found[:count]


def update_check(server: Server, key: str, device_id: str, held: str | None) -> dict[str, Any]:
    """The native update check's answer for the offline package ``transfer``."""
    body = {
        "device_id": device_id,
        "os": "android",
        "app_version": "5.3.0",
        "packages": [{"kind": "offline", "id": "transfer", "hash": held}],
    }
    request = urllib.request.Request(
        server.url + "/client/v1/updates",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Deployment-Key": key},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200
        answer = json.loads(resp.read())
    [package] = answer["packages"]
    return dict(package)


def action(answer: dict[str, Any]) -> tuple[str, str | None]:
    release = answer.get("release") or {}
    return answer["action"], release.get("version")


def publish(env: dict[str, str], root: Path, version: str) -> dict[str, Any]:
    (root / "js").mkdir(parents=True)
    (root / "index.html").write_text(f"<html>{version}</html>")
    (root / "js" / "app.js").write_text(f"// transfer {version}\n" + "x" * 500)
    args = ["publish", str(root), "--app", "bank", "--kind", "offline", "--id", "transfer"]
    return cli_json([*args, "--version", version], env)


def test_release_lifecycle_through_the_cli(server_env: tuple[Server, dict[str, str]], tmp_path: Path) -> None:
    server, env = server_env
    v1 = publish(env, tmp_path / "v1", "1.0.0")
    v2 = publish(env, tmp_path / "v2", "2.0.0")
    channels = cli_json(["channels", "list", "--app", "bank"], env)
    keys = {c["name"]: c["deployment_key"] for c in channels.get("items", channels.get("channels", []))}
    staging, production = keys["staging"], keys["production"]

    created = cli_json(
        ["release", "transfer", "1.0.0", "--app", "bank", "--channel", "staging", "--rollout", "10"], env
    )
    rid = created["id"]
    assert (created["channel"], created["kind"], created["version"]) == ("staging", "offline", "1.0.0")
    assert created["rollout"] == 10 and created["status"] == "active" and created["label"] == "v1"
    # The seed of a new release is its id: pick devices inside 10 %, inside 20 % only, and outside.
    [inside] = devices(rid, 0, 1000)
    [second] = devices(rid, 1000, 2000)
    [outside] = devices(rid, 2000, 10_000)
    assert action(update_check(server, staging, inside, None)) == ("update", "1.0.0")
    assert action(update_check(server, staging, second, None)) == ("none", None)
    assert action(update_check(server, staging, outside, None)) == ("none", None)
    assert action(update_check(server, production, inside, None)) == ("none", None)

    listed = cli_json(["releases", "list", "--app", "bank"], env)
    assert [(r["id"], r["channel"], r["version"]) for r in listed["items"]] == [(rid, "staging", "1.0.0")]
    table = mpaas(["releases", "list", "--app", "bank"], env).stdout
    assert "staging" in table and "1.0.0" in table
    shown = cli_json(["releases", "show", str(rid), "--app", "bank"], env)
    assert shown["package_hash"] == v1["package_hash"] and shown["rollout"] == 10
    assert set(shown["counters"]) >= {"checks", "installs", "failures"}
    assert "counters:" in mpaas(["releases", "show", str(rid), "--app", "bank"], env).stdout

    # Raising the rollout keeps every device already in and adds the next buckets.
    raised = cli_json(["releases", "set-rollout", str(rid), "20", "--app", "bank"], env)
    assert raised["rollout"] == 20 and raised["status"] == "active"
    assert action(update_check(server, staging, inside, None)) == ("update", "1.0.0")
    assert action(update_check(server, staging, second, None)) == ("update", "1.0.0")
    assert action(update_check(server, staging, outside, None)) == ("none", None)

    # Paused: no new device gets it; a device already on it stays on it.
    paused = cli_json(["releases", "pause", str(rid), "--app", "bank"], env)
    assert paused["status"] == "paused" and paused["status_reason"]
    assert action(update_check(server, staging, inside, None)) == ("none", None)
    assert action(update_check(server, staging, inside, v1["package_hash"])) == ("current", "1.0.0")
    again = mpaas(["releases", "pause", str(rid), "--app", "bank"], env, check=False)
    assert again.returncode != 0 and again.stderr.startswith("error:") and "Traceback" not in again.stderr
    resumed = cli_json(["releases", "resume", str(rid), "--app", "bank"], env)
    assert resumed["status"] == "active" and resumed["rollout"] == 20
    assert action(update_check(server, staging, inside, None)) == ("update", "1.0.0")

    # Promote: the same package and rollout on production, sampled with the new release's seed.
    promoted = cli_json(["releases", "promote", str(rid), "--app", "bank", "--to", "production"], env)
    pid = promoted["id"]
    assert (promoted["channel"], promoted["version"], promoted["rollout"]) == ("production", "1.0.0", 20)
    assert promoted["promoted_from"] == rid
    [prod_in] = devices(pid, 0, 2000)
    [prod_out] = devices(pid, 2000, 10_000)
    assert action(update_check(server, production, prod_in, None)) == ("update", "1.0.0")
    assert action(update_check(server, production, prod_out, None)) == ("none", None)
    on_production = cli_json(["releases", "list", "--app", "bank", "--channel", "production"], env)
    assert [r["id"] for r in on_production["items"]] == [pid]

    # A bad 2.0.0 at 100 %, then rolled back: staging returns to 1.0.0 with its old audience.
    bad = cli_json(["release", "transfer", "2.0.0", "--app", "bank", "--channel", "staging"], env)
    assert bad["label"] == "v2" and bad["rollout"] == 100
    assert action(update_check(server, staging, outside, v1["package_hash"])) == ("update", "2.0.0")
    back = cli_json(
        ["releases", "rollback", "transfer", "--app", "bank", "--channel", "staging", "--kind", "offline"],
        env,
    )
    assert back["rollback_of"] == bad["id"] and back["version"] == "1.0.0" and back["rollout"] == 20
    assert cli_json(["releases", "show", str(bad["id"]), "--app", "bank"], env)["status"] == "rolled_back"
    # A device holding the withdrawn 2.0.0 goes back whatever the rollout; others follow the 20 %.
    assert action(update_check(server, staging, outside, v2["package_hash"])) == ("update", "1.0.0")
    assert action(update_check(server, staging, second, None)) == ("update", "1.0.0")
    assert action(update_check(server, staging, outside, None)) == ("none", None)
    statuses = {r["id"]: r["status"] for r in cli_json(["releases", "list", "--app", "bank"], env)["items"]}
    assert statuses == {
        rid: "active",
        pid: "active",
        bad["id"]: "rolled_back",
        back["id"]: "active",
    }


def one_line_error(proc: subprocess.CompletedProcess[str], text: str) -> None:
    assert proc.returncode != 0
    assert proc.stderr.startswith("error:") and text in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_release_errors_are_one_line(server_env: tuple[Server, dict[str, str]], tmp_path: Path) -> None:
    _server, env = server_env
    publish(env, tmp_path / "v1", "1.0.0")
    base = ["release", "transfer", "1.0.0", "--app", "bank", "--channel", "staging"]
    one_line_error(mpaas([*base, "--rule", "colour=blue"], env, check=False), "rule")
    unknown = ["release", "transfer", "9.9.9", "--app", "bank", "--channel", "staging"]
    one_line_error(mpaas(unknown, env, check=False), "9.9.9")
    one_line_error(mpaas(["releases", "show", "999", "--app", "bank"], env, check=False), "999")
    nothing = [
        "releases",
        "rollback",
        "transfer",
        "--app",
        "bank",
        "--channel",
        "staging",
        "--kind",
        "offline",
    ]
    one_line_error(mpaas(nothing, env, check=False), "no live release")
    assert cli_json(["releases", "list", "--app", "bank"], env)["items"] == []


@pytest.mark.server_env(MPAAS_COUNTER_FLUSH_SECONDS="0.1")
def test_update_checks_of_several_releases_reach_their_counters(
    server_env: tuple[Server, dict[str, str]], tmp_path: Path
) -> None:
    server, env = server_env
    publish(env, tmp_path / "v1", "1.0.0")
    channels = cli_json(["channels", "list", "--app", "bank"], env)
    keys = {c["name"]: c["deployment_key"] for c in channels.get("items", channels.get("channels", []))}
    staged = cli_json(["release", "transfer", "1.0.0", "--app", "bank", "--channel", "staging"], env)
    promoted = cli_json(["releases", "promote", str(staged["id"]), "--app", "bank"], env)
    expected = {staged["id"]: 3, promoted["id"]: 5}
    for i in range(3):
        assert action(update_check(server, keys["staging"], f"s{i}", None)) == ("update", "1.0.0")
    for i in range(5):
        assert action(update_check(server, keys["production"], f"p{i}", None)) == ("update", "1.0.0")
    deadline = time.monotonic() + 60
    while True:
        items = cli_json(["releases", "list", "--app", "bank"], env)["items"]
        counted = {r["id"]: r["counters"]["checks"] for r in items}
        if counted == expected:
            break
        assert all(counted[k] <= n for k, n in expected.items()), counted
        assert time.monotonic() < deadline, f"checks never flushed: {counted}"
        time.sleep(0.05)
