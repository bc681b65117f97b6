"""The CLI against an in-process server: the aiohttp test server on this test's database.

Each command runs through click's CliRunner (:func:`tests_support.cli_in_process`) in a
worker thread, so the server keeps answering on the test's event loop: no server process
to start, and the CLI still talks real HTTP.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests_support import cli_in_process

Mpaas = Callable[..., Awaitable[subprocess.CompletedProcess[str]]]


@pytest.fixture
def cli_env_for(tmp_path: Path) -> Callable[[Any, str], dict[str, str]]:
    def make(client: Any, token: str) -> dict[str, str]:
        return {
            "MPAAS_SERVER": str(client.make_url("")).rstrip("/"),
            "MPAAS_TOKEN": token,
            "MPAAS_CONFIG_HOME": str(tmp_path / "cfg"),
            "MPAAS_CACHE_HOME": str(tmp_path / "cache"),
        }

    return make


@pytest.fixture
def mpaas(client: Any, admin_headers: dict[str, str], cli_env_for: Any) -> Mpaas:
    """``await mpaas(*args, code=0, token=None, input=None)``: one CLI run against ``client``."""
    admin = admin_headers["Authorization"].removeprefix("Bearer ")

    async def run(*args: str, code: int = 0, token: str | None = None) -> subprocess.CompletedProcess[str]:
        env = cli_env_for(client, token or admin)
        proc = await asyncio.to_thread(cli_in_process, list(args), env, False)
        # click's SystemExit on success is reported as an exception by CliRunner: not a crash
        head, _, trace = proc.stderr.partition("Traceback (most recent call last):\n")
        assert not trace or trace.rstrip().splitlines()[-1].startswith("SystemExit:"), proc.stderr
        proc.stderr = head
        assert proc.returncode == code, (args, proc.stdout, proc.stderr)
        return proc

    return run
