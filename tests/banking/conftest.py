"""Fixtures of the banking tests: the running app (tests/support/gateway_support.py), the
example operations package installed once, and a stand-in upstream service."""

from __future__ import annotations

import fcntl
import importlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from gateway_support import Env, admin_headers_of, env_settings, start

from mpaas.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mpaas-example-operations"


@pytest.fixture
async def env(aiohttp_client: Any, make_settings: Callable[..., Settings]) -> Env:
    return await start(aiohttp_client, env_settings(make_settings))


def _example_installed() -> bool:
    return any(
        ep.dist and ep.dist.name == "mpaas-example-operations"
        for ep in entry_points(group="mpaas.operations")
    )


@pytest.fixture(scope="session")
def example_operations() -> None:
    """pip-install examples/mpaas-example-operations into this venv once (a no-op when
    .ci/run or a developer installed it), under a file lock so xdist workers take turns."""
    if _example_installed():
        return
    lock = Path(tempfile.gettempdir()) / "mpaas-example-operations.lock"
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        importlib.invalidate_caches()
        if not _example_installed():
            with tempfile.TemporaryDirectory() as tmp:  # build outside the tree: no build/ left behind
                source = Path(tmp) / "src"
                shutil.copytree(EXAMPLE, source)
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "pip",
                        "install",
                        "-q",
                        "--no-deps",
                        "--no-build-isolation",
                        str(source),
                    ],
                    check=True,
                    capture_output=True,
                )
        importlib.invalidate_caches()
    assert _example_installed()


@pytest.fixture
async def admin(env: Env) -> dict[str, str]:
    return await admin_headers_of(env)
