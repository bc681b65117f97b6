"""Signing against real `mpaas server` processes: CodePush signing in `mpaas publish`, and
two servers publishing at once on one PostgreSQL database."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import jwt
import pytest
from signing_support import device_hash
from tuf.api.metadata import Metadata, Snapshot, Targets, Timestamp

from mpaas.settings import Settings
from mpaas.signing.client import MpaasUpdateClient
from mpaas.signing.codepush import generate_codepush_keypair, verify_bundle_dir
from mpaas.signing.db_store import DbMetadataStore
from mpaas.storage.db import Database
from tests_support import free_port

MPAAS = [sys.executable, "-m", "mpaas.cli.main"]
APP = "bank"


def run_cli(args: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run([*MPAAS, *args], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("server did not become healthy")


class Cluster:
    """One data directory and database, an admin token, and N server processes."""

    def __init__(self, settings: Settings, tmp: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MPAAS_")} | {
            "MPAAS_DATA_DIR": str(settings.data_dir),
            "MPAAS_DATABASE_URL": settings.database_url,
            "MPAAS_CONFIG_HOME": str(tmp / "cfg"),
            "MPAAS_CACHE_HOME": str(tmp / "cache"),
            "MPAAS_LOG_JSON": "false",
        }
        self.token = run_cli(["init"], self.env).strip()
        self.urls: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, count: int) -> None:
        for _ in range(count):
            port = free_port()
            env = self.env | {"MPAAS_PORT": str(port), "MPAAS_TUF_REFRESH_INTERVAL": "1"}
            proc = subprocess.Popen([*MPAAS, "server"], env=env, stdout=subprocess.DEVNULL)
            self.procs.append(proc)
            self.urls.append(f"http://127.0.0.1:{port}")
        for url, proc in zip(self.urls, self.procs, strict=True):
            wait_healthy(url, proc)

    def admin_env(self, url: str) -> dict[str, str]:
        return self.env | {"MPAAS_SERVER": url, "MPAAS_TOKEN": self.token}

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=20)


@pytest.fixture
def cluster(settings: Settings, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(settings, tmp_path)
    try:
        yield c
    finally:
        c.stop()


# ---------------------------------------------------------------- CodePush


def bundle_tree(root: Path, seed: str) -> Path:
    (root / "CodePush" / "assets").mkdir(parents=True)
    (root / "CodePush" / "index.android.bundle").write_text(f"var app = '{seed}';" * 200)
    (root / "CodePush" / "assets" / "logo.png").write_bytes(hashlib.sha256(seed.encode()).digest() * 64)
    return root


async def fetch_archive(url: str, token: str, version: str) -> bytes:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session,
        session.get(f"{url}/api/v1/apps/{APP}/packages/bundle/rn/{version}/archive") as resp,
    ):
        assert resp.status == 200
        return await resp.read()


async def test_codepush_signature_made_by_publish_verifies(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start(1)
    env = cluster.admin_env(cluster.urls[0])
    await asyncio.to_thread(run_cli, ["apps", "create", APP, "--platform", "android"], env)
    private_pem, public_pem = generate_codepush_keypair()
    key = tmp_path / "codepush.pem"
    key.write_bytes(private_pem)

    source = bundle_tree(tmp_path / "src", "one")
    before = sorted(p.relative_to(source) for p in source.rglob("*"))
    tgz = tmp_path / "bundle.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(bundle_tree(tmp_path / "src2", "two") / "CodePush", "CodePush")

    for path, version in ((source, "1.0.0"), (tgz, "1.0.1")):
        args = ["publish", str(path), "--app", APP, "--kind", "bundle", "--id", "rn", "--version", version]
        out = await asyncio.to_thread(run_cli, [*args, "--codepush-private-key", str(key), "--json"], env)
        result = json.loads(out)
        archive = await fetch_archive(cluster.urls[0], cluster.token, version)
        device = tmp_path / f"device-{version}"
        zipfile.ZipFile(io.BytesIO(archive)).extractall(device)
        claims = verify_bundle_dir(
            device, public_pem, device_hash(device), expected_hash=result["codepush_hash"]
        )
        assert claims["contentHash"] == result["codepush_hash"]
        token = (device / "CodePush" / ".codepushrelease").read_text()
        assert jwt.decode(token, public_pem, algorithms=["RS256"])["contentHash"] == result["codepush_hash"]
        # A device holding another key refuses it.
        other_public = generate_codepush_keypair()[1]
        with pytest.raises(Exception, match="trusted party"):
            verify_bundle_dir(
                device, other_public, device_hash(device), expected_hash=result["codepush_hash"]
            )

    # The engineer's directory is left as it was: the signature went into a copy.
    assert sorted(p.relative_to(source) for p in source.rglob("*")) == before

    offline = ["publish", str(source), "--app", APP, "--kind", "offline", "--id", "x", "--version", "1"]
    refused = subprocess.run(
        [*MPAAS, *offline, "--codepush-private-key", str(key)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "only applies to --kind bundle" in refused.stderr


# ---------------------------------------------------------------- two servers, one database


def h5(i: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.html", f"<html>{i}</html>")
        zf.writestr("app.js", hashlib.sha256(str(i).encode()).hexdigest() * 100)
    return buf.getvalue()


async def publish_over_http(url: str, token: str, package_id: str, version: str, data: bytes) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(
            f"{url}/api/v1/apps/{APP}/uploads",
            json={"size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        ) as resp:
            assert resp.status == 201, await resp.text()
            upload_id = (await resp.json())["upload_id"]
        async with session.put(
            f"{url}/api/v1/apps/{APP}/uploads/{upload_id}/chunks", params={"offset": 0}, data=data
        ) as resp:
            assert resp.status == 200, await resp.text()
        body = {"upload_id": upload_id, "kind": "offline", "id": package_id, "version": version}
        async with session.post(f"{url}/api/v1/apps/{APP}/packages", json=body) as resp:
            assert resp.status == 201, await resp.text()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_two_servers_publishing_at_once_never_reuse_a_version(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = await asyncio.to_thread(make_settings)  # may migrate a template database
    cluster = await asyncio.to_thread(Cluster, settings, tmp_path)
    try:
        root_key = tmp_path / "offline" / "root.pem"
        root_out = tmp_path / "1.root.json"
        await asyncio.to_thread(cluster.start, 2)
        env = cluster.admin_env(cluster.urls[0])
        await asyncio.to_thread(run_cli, ["apps", "create", APP, "--platform", "ios"], env)
        await asyncio.to_thread(
            run_cli,
            [
                "keys",
                "init",
                "--app",
                APP,
                "--root-key-out",
                str(root_key),
                "--root-metadata-out",
                str(root_out),
            ],
            cluster.env,
        )

        rounds, per_server = 3, 4
        expected: list[str] = []
        for r in range(rounds):
            jobs = []
            for s, url in enumerate(cluster.urls):
                for i in range(per_server):
                    n = (r * len(cluster.urls) + s) * per_server + i
                    package_id = f"p{n % 5}"
                    version = f"1.{r}.{s * per_server + i}"
                    expected.append(f"offline/{package_id}/{version}/full.zip")
                    jobs.append(publish_over_http(url, cluster.token, package_id, version, h5(n)))
            await asyncio.gather(*jobs)
    finally:
        cluster.stop()

    db = Database(settings)
    try:
        store = DbMetadataStore(db)
        for role in ("root", "targets", "snapshot", "timestamp"):
            versions = await store.versions(APP, role)
            assert versions == list(range(1, len(versions) + 1)), role
        # Each stored file really is the version it is stored under, and chains to the next.
        for version in await store.versions(APP, "timestamp"):
            raw = await store.get(APP, f"{version}.timestamp.json")
            assert raw is not None and Metadata[Timestamp].from_bytes(raw).signed.version == version
        latest = Metadata[Timestamp].from_bytes(await store.get(APP, "timestamp.json") or b"").signed
        snapshot_raw = await store.get(APP, f"{latest.snapshot_meta.version}.snapshot.json")
        snapshot = Metadata[Snapshot].from_bytes(snapshot_raw or b"").signed
        targets_version = snapshot.meta["targets.json"].version
        targets = Metadata[Targets].from_bytes(await store.get(APP, f"{targets_version}.targets.json") or b"")
        # No publish was lost (the hook or the reconciler, whichever won, signed each one).
        assert set(expected) <= set(targets.signed.targets)
    finally:
        await db.close()

    # And the final metadata verifies with ngclient, against a server started afresh.
    cluster.procs, cluster.urls = [], []
    try:
        await asyncio.to_thread(cluster.start, 1)
        base = f"{cluster.urls[0]}/tuf/{APP}"
        device = MpaasUpdateClient(
            f"{base}/metadata/", f"{base}/targets/", root_out.read_bytes(), tmp_path / "device"
        )
        for name in (expected[0], expected[-1]):
            await asyncio.to_thread(device.download, name)
    finally:
        cluster.stop()
