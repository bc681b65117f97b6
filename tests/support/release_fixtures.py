"""Fixtures for the releases and client-protocol tests: an app, a publisher, and an update-check client.

Loaded as a plugin by tests/conftest.py, so that tests/packages/releases and
tests/packages/protocols share them.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mpaas.appkeys import DB
from mpaas.identity.tenancy import get_channel
from tests_support import npm_installed

Publish = Callable[..., Awaitable[dict[str, Any]]]


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def bundle_files(version: str, *, extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    files = {
        "index.android.bundle": b"// bundle " + version.encode() + b"\n" + b"x" * 3000,
        "assets/logo.png": b"\x89PNG" + b"L" * 2000,
        "assets/unchanged.txt": b"same in every version" * 50,
    }
    files.update(extra or {})
    return files


@pytest.fixture
async def bank(client: Any, admin_headers: dict[str, str]) -> dict[str, str]:
    resp = await client.post(
        "/api/v1/apps", json={"name": "bank", "platforms": ["ios", "android"]}, headers=admin_headers
    )
    assert resp.status == 201, await resp.text()
    keys = {}
    for name in ("staging", "production"):
        ref = await get_channel(client.app[DB], "bank", name)
        keys[name] = ref.channel.deployment_key
    return keys


@pytest.fixture
def publish(client: Any, admin_headers: dict[str, str], bank: dict[str, str]) -> Publish:
    async def run(files: dict[str, bytes], version: str, **spec: Any) -> dict[str, Any]:
        data = make_zip(files)
        sha = hashlib.sha256(data).hexdigest()
        resp = await client.post(
            "/api/v1/apps/bank/uploads", json={"size": len(data), "sha256": sha}, headers=admin_headers
        )
        assert resp.status == 201, await resp.text()
        upload_id = (await resp.json())["upload_id"]
        resp = await client.put(
            f"/api/v1/apps/bank/uploads/{upload_id}/chunks?offset=0", data=data, headers=admin_headers
        )
        assert resp.status == 200, await resp.text()
        body = {"upload_id": upload_id, "kind": "bundle", "id": "main", "version": version} | spec
        resp = await client.post("/api/v1/apps/bank/packages", json=body, headers=admin_headers)
        assert resp.status in (200, 201), await resp.text()
        return dict(await resp.json())

    return run


@pytest.fixture
def release(client: Any, admin_headers: dict[str, str]) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def run(version: str, channel: str = "production", **spec: Any) -> dict[str, Any]:
        body = {"package_id": spec.pop("package_id", "main"), "version": version} | spec
        resp = await client.post(
            f"/api/v1/apps/bank/channels/{channel}/releases", json=body, headers=admin_headers
        )
        assert resp.status == 201, await resp.text()
        return dict(await resp.json())

    return run


COMPAT = Path(__file__).resolve().parent.parent / "compat"


@pytest.fixture(scope="session")
def compat_dir() -> Path:
    """tests/compat with the CodePush and Expo client packages installed."""
    return npm_installed(COMPAT, "for the client-SDK compatibility tests")


async def run_node(compat: Path, script: str, *args: str, stdin: bytes = b"") -> Any:
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(compat / script),
        *args,
        cwd=compat,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=60)
    assert proc.returncode == 0, (out + err).decode(errors="replace")
    return json.loads(out.decode().strip().splitlines()[-1])


@pytest.fixture
def node() -> Callable[..., Awaitable[Any]]:
    return run_node
