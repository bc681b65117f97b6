"""Helpers shared by test modules (importable as ``tests_support``; see tests/conftest.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from pathlib import Path
from typing import IO, Any


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


class LoopClock:
    """The running event loop's clock, which a test moves forward: ``call_later`` deadlines fire at once.

    Request timeouts are ``loop.call_later`` timers; advancing this clock past one ends a
    request held by a stand-in without a wall-clock wait, and without a short timeout that
    a busy machine could also hit on the requests that are answered.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.skew = 0.0
        self._real = loop.time

    def time(self) -> float:
        return self._real() + self.skew

    def advance(self, seconds: float) -> None:
        self.skew += seconds


class Server:
    """A `mpaas server` subprocess for end-to-end tests."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.url = f"http://127.0.0.1:{env['MPAAS_PORT']}"
        self.proc: subprocess.Popen[bytes] | None = None
        #: the server's stderr while it runs (a fresh file at each start, closed by stop())
        self._stderr: IO[bytes] | None = None

    def start(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            [*MPAAS, "server"], env=self.env, stdout=subprocess.DEVNULL, stderr=self._stderr
        )
        # Only a guard against a server that never comes up: on a loaded 2-core CI machine a
        # start (imports, migrations) has taken over 30 s, which is no failure of the server.
        deadline = time.monotonic() + 180
        while True:
            assert self.proc.poll() is None, f"server exited: {self.stderr_tail()}"
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)

    def stderr_tail(self, limit: int = 4000) -> str:
        """The end of what the server wrote to stderr, so a failed start says why."""
        if self._stderr is None or self._stderr.closed:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()[-limit:].decode(errors="replace")

    def freeze(self) -> None:
        """SIGSTOP: the server holds whatever it is doing until killed, so a check and the kill see one state."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
                raise AssertionError("the server did not stop within 120 s of SIGTERM") from None
        if self._stderr is not None:
            self._stderr.close()


def cli(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the `mpaas` CLI as a release engineer would; assert success unless told not to."""
    proc = subprocess.run([*MPAAS, *args], env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def cli_in_process(
    args: list[str], env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    """:func:`cli` without a new interpreter: the same `mpaas` group through click's CliRunner.

    For tests about what a command does, not about the process: each subprocess costs about a
    second of CPU in imports. The environment is exactly ``env`` for MPAAS_* variables (every
    other one of this process is unset for the call). An exception the CLI did not turn into
    its one-line error shows up in ``stderr`` as a traceback, as it would from a subprocess.
    """
    from click.testing import CliRunner

    from mpaas.cli.main import cli as mpaas_cli

    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MPAAS_")}
    result = CliRunner().invoke(mpaas_cli, args, env=unset | dict(env))
    stderr = result.stderr
    if result.exc_info is not None and not isinstance(result.exception, SystemExit):
        stderr += "Traceback (most recent call last):\n" + "".join(
            traceback.format_exception(*result.exc_info)
        )
    proc = subprocess.CompletedProcess(["mpaas", *args], result.exit_code, result.stdout, stderr)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


async def cli_in_thread(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """:func:`cli_in_process` off the event loop, for tests whose server runs on that loop.

    The CLI's own ``asyncio.run`` gets a loop in the worker thread; the server keeps answering.
    """
    return await asyncio.to_thread(cli_in_process, args, env)


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
        # Cheap argon2id for the console admin `mpaas init` makes (production: 64 MiB).
        "MPAAS_CONSOLE_ARGON2_MEMORY_KIB": "1024",
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
