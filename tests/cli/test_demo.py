"""The README's run command: `mpaas demo` serves /healthz on the embedded default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests_support import free_port


def test_demo_serves_health_and_sample_app(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPAAS_")}
    env |= {"MPAAS_CONFIG_HOME": str(tmp_path / "cfg"), "MPAAS_LOG_JSON": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mpaas.cli.main", "demo", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 180  # a hang guard only: a loaded machine starts slowly
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "demo did not come up"
                time.sleep(0.2)
        cfg = json.loads((tmp_path / "cfg" / "mpaas" / "config.json").read_text())
        assert cfg["server"] == f"http://127.0.0.1:{port}"
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/apps", headers={"Authorization": f"Bearer {cfg['token']}"}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert [a["name"] for a in json.loads(resp.read())["items"]] == ["superapp"]
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/apps/superapp/packages",
            headers={"Authorization": f"Bearer {cfg['token']}"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert [(p["id"], p["version"]) for p in json.loads(resp.read())["items"]] == [
                ("transfer", "1.0.0")
            ]
        assert (tmp_path / ".mpaas" / "mpaas.db").exists()
        assert oct((tmp_path / ".mpaas" / "demo-token").stat().st_mode & 0o777) == "0o600"
        # The README's promise: the console's admin signs in with the password the demo keeps.
        saved = tmp_path / ".mpaas" / "demo-console-password"
        assert oct(saved.stat().st_mode & 0o777) == "0o600"
        sign_in = urllib.request.Request(
            f"http://127.0.0.1:{port}/console/api/session",
            data=json.dumps({"username": "admin", "password": saved.read_text().strip()}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(sign_in, timeout=30) as resp:
            assert json.loads(resp.read())["role"] == "admin"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
