"""Helpers shared by test modules (importable as ``tests_support``; see tests/conftest.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


def assert_error(body: Any, code: str) -> None:
    """The one error shape of every HTTP answer: ``{"error": {"code", "message"}}``."""
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


MPAAS = [sys.executable, "-m", "mpaas.cli.main"]


class Server:
    """A `mpaas server` subprocess for end-to-end tests."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.url = f"http://127.0.0.1:{env['MPAAS_PORT']}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*MPAAS, "server"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, "server exited"
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


def cli(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the `mpaas` CLI as a release engineer would; assert success unless told not to."""
    proc = subprocess.run([*MPAAS, *args], env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def cli_env(data_dir: Path, database_url: str, home: Path) -> dict[str, str]:
    """The environment of a CLI and server pair: this test's database, its own config dirs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPAAS_")}
    return env | {
        "MPAAS_DATA_DIR": str(data_dir),
        "MPAAS_DATABASE_URL": database_url,
        "MPAAS_PORT": str(free_port()),
        "MPAAS_CONFIG_HOME": str(home / "cfg"),
        "MPAAS_CACHE_HOME": str(home / "cache"),
        "MPAAS_LOG_JSON": "false",
    }


def npm_installed(folder: Path, needed_for: str) -> Path:
    """``folder`` with its npm packages installed, once per machine (node_modules is git-ignored).

    Skips, saying why, only when node/npm is missing or the npm registry cannot be reached;
    a lock file keeps parallel test workers from installing at once.
    """
    import fcntl
    import shutil

    import pytest

    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip(f"node and npm are needed {needed_for}")
    marker = folder / "node_modules" / ".mpaas-installed"
    marker.parent.mkdir(exist_ok=True)
    with open(marker.parent / ".mpaas-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            proc = subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--no-package-lock"],
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if proc.returncode != 0:
                text = proc.stderr + proc.stdout
                if any(s in text for s in ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ETIMEDOUT", "network")):
                    pytest.skip(f"npm cannot reach the registry: {text.strip().splitlines()[-1]}")
                raise RuntimeError(f"npm install failed:\n{text}")
            marker.write_text("ok\n")
    return folder
