"""Helpers shared by the signing tests (importable as ``signing_support``).

Their fixtures live in tests/signing/conftest.py; test modules cannot import each
other (``--import-mode=importlib``), so the types and helpers the fixtures return are
here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import json
import os
import subprocess
import sys
import types
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from tuf.api import exceptions as tuf_exc
from tuf.ngclient._internal import trusted_metadata_set

from mpaas.appkeys import SETTINGS
from mpaas.signing.client import MpaasUpdateClient
from mpaas.signing.keys import AppKeys
from mpaas.signing.service import SigningService
from mpaas.signing.signer import Signer
from mpaas.signing.targets import TargetSpec, target_path_on_disk
from mpaas.signing.tuf_repo import TufRepository
from mpaas.signing.tuf_store import InMemoryMetadataStore
from mpaas.storage.blobs.base import blob_key

APP = "bank"
#: Target names of the repository-alone tests.
PKG = "packages/offline/transfer/1.2.0/full.zip"
PATCH = f"packages/offline/transfer/1.2.0/delta-{'a' * 64}.patch"
MPAAS = [sys.executable, "-m", "mpaas.cli.main"]
# A swapped file fails the declared hash, or the declared length first when it is longer
# (ECDSA signatures vary in length by a byte or two).
MISMATCH = (tuf_exc.LengthOrHashMismatchError, tuf_exc.DownloadLengthMismatchError)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def device_hash(root: Path) -> str:
    """An independent re-implementation of CodePushUpdateUtils.verifyFolderHash."""
    entries = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if (
            path.is_file()
            and path.name not in (".DS_Store", ".codepushrelease")
            and not rel.startswith("__MACOSX/")
        ):
            entries.append(f"{rel}:{sha(path.read_bytes())}")
    text = json.dumps(sorted(entries), separators=(",", ":"))
    return sha(text.encode())


class _FrozenDatetime(dt.datetime):
    frozen: dt.datetime

    @classmethod
    def now(cls, tz: dt.tzinfo | None = None) -> _FrozenDatetime:
        return cls.frozen  # type: ignore[return-value]


def freeze_client_clock(monkeypatch: pytest.MonkeyPatch, at: dt.datetime) -> None:
    """ngclient reads "now" once, in TrustedMetadataSet: move that clock."""
    _FrozenDatetime.frozen = at
    monkeypatch.setattr(
        trusted_metadata_set,
        "datetime",
        types.SimpleNamespace(datetime=_FrozenDatetime, timezone=dt.timezone),
    )


# ---------------------------------------------------------------- a repository alone


@dataclass
class Repo:
    """One app's repository, the bytes of its targets, and a server over both."""

    store: InMemoryMetadataStore
    repo: TufRepository
    keys: AppKeys
    root_signer: Signer
    blobs: dict[str, bytes] = field(default_factory=dict)
    metadata_overrides: dict[str, bytes] = field(default_factory=dict)
    target_overrides: dict[str, bytes] = field(default_factory=dict)
    base_url: str = ""

    async def publish(self, name: str, data: bytes, **custom: str) -> int:
        self.blobs[target_path_on_disk(name, sha(data))] = data
        return await self.repo.add_targets(APP, [TargetSpec(name, len(data), sha(data), custom)])

    def client(self, cache: Path, root: bytes | None = None) -> MpaasUpdateClient:
        return MpaasUpdateClient(
            f"{self.base_url}/metadata/",
            f"{self.base_url}/targets/",
            root if root is not None else self.keys.root_metadata,
            cache,
        )

    async def metadata(self, filename: str) -> bytes:
        raw = await self.store.get(APP, filename)
        assert raw is not None, filename
        return raw


def make_repo_app(repo: Repo) -> web.Application:
    """A tiny TUF server over a :class:`Repo`, with overrides an attacker would serve."""

    async def metadata(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        raw = repo.metadata_overrides.get(name)
        if raw is None:
            raw = await repo.store.get(APP, name)
        if raw is None:
            raise web.HTTPNotFound()
        return web.Response(body=raw, content_type="application/json")

    async def target(request: web.Request) -> web.Response:
        path = request.match_info["path"]
        raw = repo.target_overrides.get(path, repo.blobs.get(path))
        if raw is None:
            raise web.HTTPNotFound()
        return web.Response(body=raw, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/metadata/{name}", metadata)
    app.router.add_get("/targets/{path:.+}", target)
    return app


# ---------------------------------------------------------------- a running mpaas app


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def h5(seed: int, changed: int | None = None) -> dict[str, bytes]:
    files = {"index.html": b"<html>transfer</html>"}
    for i in range(20):
        body = hashlib.sha256(f"{seed}-{i}".encode()).digest() * 60 + b"function f%d(){}" % i * 40
        files[f"js/chunk{i}.js"] = body + (b"// changed" if i == changed else b"")
    return files


@dataclass
class Server:
    """The app under test, its signing service, and helpers to act on both."""

    client: Any
    headers: dict[str, str]
    signing: SigningService[Any]
    root: bytes
    root_key: Path
    tmp: Path
    packages: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return str(self.client.make_url(f"/tuf/{APP}")).rstrip("/")

    def device(self, name: str, base: str | None = None, root: bytes | None = None) -> MpaasUpdateClient:
        url = base or self.base
        return MpaasUpdateClient(
            f"{url}/metadata/", f"{url}/targets/", root or self.root, self.tmp / "devices" / name
        )

    async def publish(self, files: dict[str, bytes], version: str, package_id: str = "transfer") -> Any:
        data = make_zip(files)
        resp = await self.client.post(
            f"/api/v1/apps/{APP}/uploads",
            json={"size": len(data), "sha256": sha(data)},
            headers=self.headers,
        )
        assert resp.status == 201, await resp.text()
        upload_id = (await resp.json())["upload_id"]
        resp = await self.client.put(
            f"/api/v1/apps/{APP}/uploads/{upload_id}/chunks?offset=0", data=data, headers=self.headers
        )
        assert resp.status == 200, await resp.text()
        body = {"upload_id": upload_id, "kind": "offline", "id": package_id, "version": version}
        resp = await self.client.post(f"/api/v1/apps/{APP}/packages", json=body, headers=self.headers)
        assert resp.status == 201, await resp.text()
        resp = await self.client.get(
            f"/api/v1/apps/{APP}/packages/offline/{package_id}/{version}", headers=self.headers
        )
        result = await resp.json()  # with each delta's from_version and patch_sha256
        self.packages[version] = result
        return result

    async def metadata(self, filename: str) -> bytes:
        resp = await self.client.get(f"/tuf/{APP}/metadata/{filename}")
        assert resp.status == 200, filename
        return bytes(await resp.read())

    def blob_path(self, sha256: str) -> Path:
        return Path(self.client.app[SETTINGS].data_dir) / "blobs" / blob_key(sha256)

    def cli_env(self) -> dict[str, str]:
        s = self.client.app[SETTINGS]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MPAAS_")}
        return env | {
            "MPAAS_DATA_DIR": str(s.data_dir),
            "MPAAS_DATABASE_URL": s.database_url,
            "MPAAS_LOG_JSON": "false",
        }

    async def run_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run, [*MPAAS, *args], env=self.cli_env(), capture_output=True, text=True, timeout=120
        )

    async def cli(self, *args: str) -> str:
        proc = await self.run_cli(*args)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout


class Mitm:
    """A proxy in front of the server that can swap what it answers for chosen paths."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.overrides: dict[str, bytes] = {}
        self.base = ""

    async def handle(self, request: web.Request) -> web.Response:
        name = request.path.rsplit("/", 1)[-1]
        if name in self.overrides:
            return web.Response(body=self.overrides[name], content_type="application/json")
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.upstream + request.path.removeprefix(f"/tuf/{APP}")) as resp,
        ):
            return web.Response(body=await resp.read(), status=resp.status)
