"""The packages admin API end to end: upload, publish, dedupe, deltas, downloads, gc."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import select

from mpaas.appkeys import BLOBS, DB, SETTINGS
from mpaas.packages.deltas.applier import apply_update, install_full
from mpaas.packages.manifest import manifest_of_tree
from mpaas.packages.models import Package, PackageDelta, PackageFile, UploadSession

pytestmark = pytest.mark.usefixtures("bank")


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def make_tgz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1234567
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def h5(seed: int, n: int = 40, changed: set[int] | None = None) -> dict[str, bytes]:
    rng = __import__("random").Random(seed)
    files = {"index.html": b"<html><script src=js/app.js></script></html>"}
    for i in range(n):
        body = bytes(rng.getrandbits(8) for _ in range(2000)) + b"function f%d(){}" % i * 50
        if changed and i in changed:
            body += b"// changed"
        files[f"js/chunk{i}.js"] = body
    return files


@pytest.fixture
async def bank(client: Any, admin_headers: dict[str, str]) -> None:
    resp = await client.post(
        "/api/v1/apps", json={"name": "bank", "platforms": ["ios", "android"]}, headers=admin_headers
    )
    assert resp.status == 201


async def upload(client: Any, headers: dict[str, str], data: bytes, chunk: int = 50_000) -> str:
    sha = hashlib.sha256(data).hexdigest()
    resp = await client.post(
        "/api/v1/apps/bank/uploads", json={"size": len(data), "sha256": sha}, headers=headers
    )
    assert resp.status == 201, await resp.text()
    up = await resp.json()
    offset = 0
    while offset < len(data):
        part = data[offset : offset + chunk]
        resp = await client.put(
            f"/api/v1/apps/bank/uploads/{up['upload_id']}/chunks?offset={offset}", data=part, headers=headers
        )
        assert resp.status == 200, await resp.text()
        offset = (await resp.json())["offset"]
    return str(up["upload_id"])


async def publish(client: Any, headers: dict[str, str], data: bytes, **spec: Any) -> Any:
    upload_id = await upload(client, headers, data)
    body = {"upload_id": upload_id, "kind": "offline", "id": "transfer", "version": "1.0.0"} | spec
    return await client.post("/api/v1/apps/bank/packages", json=body, headers=headers)


async def counts(client: Any) -> tuple[int, int, int, int]:
    async with client.app[DB].session() as s:
        pkgs = (await s.exec(select(func.count()).select_from(Package))).one()
        files = (await s.exec(select(func.count()).select_from(PackageFile))).one()
        deltas = (await s.exec(select(func.count()).select_from(PackageDelta))).one()
    blobs = len([b async for b in client.app[BLOBS].list_blobs()])
    return pkgs, files, deltas, blobs


async def test_publish_list_show_and_idempotency(client: Any, admin_headers: dict[str, str]) -> None:
    files = h5(1)
    resp = await publish(client, admin_headers, make_zip(files), description="first")
    assert resp.status == 201, await resp.text()
    first = await resp.json()
    assert first["file_count"] == len(files) and first["created"] is True
    assert first["meta"] == {"description": "first", "entry": "index.html"}

    # The same content, re-packed as a tar.gz, is the same package: 200, nothing new stored.
    before = await counts(client)
    resp = await publish(client, admin_headers, make_tgz(files))
    assert resp.status == 200
    assert (await resp.json())["package_hash"] == first["package_hash"]
    assert await counts(client) == before

    # Different content under the same version is refused.
    resp = await publish(client, admin_headers, make_zip(h5(2)))
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "package_version_exists"

    listed = await (await client.get("/api/v1/apps/bank/packages", headers=admin_headers)).json()
    assert [p["version"] for p in listed["items"]] == ["1.0.0"]
    shown = await (
        await client.get("/api/v1/apps/bank/packages/offline/transfer/1.0.0?files=1", headers=admin_headers)
    ).json()
    assert {f["path"] for f in shown["files"]} == set(files)


async def test_files_are_stored_once_across_versions(client: Any, admin_headers: dict[str, str]) -> None:
    await publish(client, admin_headers, make_zip(h5(1)))
    _p, _f, _d, blobs_v1 = await counts(client)
    resp = await publish(client, admin_headers, make_zip(h5(1, changed={3})), version="1.1.0")
    assert resp.status == 201
    _p, _f, _d, blobs_v2 = await counts(client)
    # one changed file + new archive + new manifest + one patch
    assert blobs_v2 - blobs_v1 == 4


async def test_delta_applies_to_give_the_new_version(
    client: Any, admin_headers: dict[str, str], tmp_path: Path
) -> None:
    v1, v2 = h5(5), h5(5, changed={1, 7})
    v1["js/app.3f2a1c.js"] = v1["js/chunk9.js"]
    v2["js/app.9b8e7d.js"] = v2["js/chunk9.js"] + b"//renamed"
    del v2["js/chunk10.js"]
    await publish(client, admin_headers, make_zip(v1))
    resp = await publish(client, admin_headers, make_zip(v2), version="2.0.0")
    body = await resp.json()
    assert len(body["deltas"]) == 1

    extracted = tmp_path / "extracted"
    archive = await client.get(
        "/api/v1/apps/bank/packages/offline/transfer/1.0.0/archive", headers=admin_headers
    )
    zipfile.ZipFile(io.BytesIO(await archive.read())).extractall(extracted)
    installed = tmp_path / "app" / "current"
    installed.parent.mkdir()
    install_full(extracted, installed)
    patch = await client.get(
        "/api/v1/apps/bank/packages/offline/transfer/2.0.0/deltas/1.0.0", headers=admin_headers
    )
    assert patch.status == 200
    patch_file = tmp_path / "p.patch"
    patch_file.write_bytes(await patch.read())
    assert patch_file.stat().st_size < body["size"] * 0.5

    new_dir = apply_update(installed, patch_file)
    assert manifest_of_tree(new_dir).package_hash == body["package_hash"]
    assert {
        p.relative_to(new_dir).as_posix(): p.read_bytes() for p in new_dir.rglob("*") if p.is_file()
    } == v2

    diff = await (
        await client.get(
            "/api/v1/apps/bank/packages/offline/transfer/2.0.0/diff?from=1.0.0", headers=admin_headers
        )
    ).json()
    ops = {f["path"]: f["op"] for f in diff["changes"]["files"]}
    assert ops["js/app.9b8e7d.js"] == "rename" and ops["js/chunk10.js"] == "delete"
    assert diff["delta"]["size"] == patch_file.stat().st_size


async def test_archive_download_range_and_etag(client: Any, admin_headers: dict[str, str]) -> None:
    resp = await publish(client, admin_headers, make_zip(h5(3)))
    info = await resp.json()
    url = "/api/v1/apps/bank/packages/offline/transfer/1.0.0/archive"
    full = await client.get(url, headers=admin_headers | {"Accept-Encoding": "gzip"})
    body = await full.read()
    assert full.status == 200 and len(body) == info["size"] == int(full.headers["Content-Length"])
    assert "Content-Encoding" not in full.headers
    assert hashlib.sha256(body).hexdigest() == info["archive_sha256"]
    etag = full.headers["ETag"]
    part = await client.get(url, headers=admin_headers | {"Range": "bytes=10-19"})
    assert part.status == 206 and await part.read() == body[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(body)}"
    tail = await client.get(url, headers=admin_headers | {"Range": "bytes=-5"})
    assert await tail.read() == body[-5:]
    bad = await client.get(url, headers=admin_headers | {"Range": f"bytes={len(body) + 5}-"})
    assert bad.status == 416
    cached = await client.get(url, headers=admin_headers | {"If-None-Match": etag})
    assert cached.status == 304
    head = await client.head(url, headers=admin_headers)  # CDNs and download managers probe first
    assert head.status == 200 and await head.read() == b""
    assert head.headers["Content-Length"] == full.headers["Content-Length"] and head.headers["ETag"] == etag
    assert (await client.head(url)).status == 401


async def test_resumable_upload(client: Any, admin_headers: dict[str, str]) -> None:
    data = make_zip(h5(4))
    sha = hashlib.sha256(data).hexdigest()
    up = await (
        await client.post(
            "/api/v1/apps/bank/uploads", json={"size": len(data), "sha256": sha}, headers=admin_headers
        )
    ).json()
    base = f"/api/v1/apps/bank/uploads/{up['upload_id']}"
    await client.put(f"{base}/chunks?offset=0", data=data[:1000], headers=admin_headers)
    # The connection "dropped"; the client asks where to resume.
    status = await (await client.get(base, headers=admin_headers)).json()
    assert status["offset"] == 1000
    wrong = await client.put(f"{base}/chunks?offset=0", data=data[:1000], headers=admin_headers)
    assert wrong.status == 409 and (await wrong.json())["error"]["code"] == "upload_offset_mismatch"
    early = await client.post(
        "/api/v1/apps/bank/packages",
        headers=admin_headers,
        json={"upload_id": up["upload_id"], "kind": "offline", "id": "t", "version": "1"},
    )
    assert early.status == 409 and (await early.json())["error"]["code"] == "upload_incomplete"
    too_much = await client.put(
        f"{base}/chunks?offset=1000", data=data[1000:] + b"extra", headers=admin_headers
    )
    assert too_much.status == 413
    done = await client.put(f"{base}/chunks?offset=1000", data=data[1000:], headers=admin_headers)
    assert (await done.json())["offset"] == len(data)
    resp = await client.post(
        "/api/v1/apps/bank/packages",
        headers=admin_headers,
        json={"upload_id": up["upload_id"], "kind": "offline", "id": "t", "version": "1"},
    )
    assert resp.status == 201
    async with client.app[DB].session() as s:
        assert (await s.exec(select(func.count()).select_from(UploadSession))).one() == 0


async def test_digest_mismatch_upload_is_rejected(client: Any, admin_headers: dict[str, str]) -> None:
    data = make_zip(h5(4))
    before = await counts(client)
    up = await (
        await client.post(
            "/api/v1/apps/bank/uploads", json={"size": len(data), "sha256": "0" * 64}, headers=admin_headers
        )
    ).json()
    await client.put(
        f"/api/v1/apps/bank/uploads/{up['upload_id']}/chunks?offset=0", data=data, headers=admin_headers
    )
    resp = await client.post(
        "/api/v1/apps/bank/packages",
        headers=admin_headers,
        json={"upload_id": up["upload_id"], "kind": "offline", "id": "t", "version": "1"},
    )
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "digest_mismatch"
    assert await counts(client) == before


def evil_archives(archives: Any) -> list[tuple[str, bytes, str]]:
    z, m = archives.craft_zip, archives.ZipMember
    t, tm = archives.craft_tar, archives.tar_member
    import tarfile as tf

    return [
        ("path_traversal", z([m("index.html", b"x"), m("../evil.js", b"x")]), "../evil.js"),
        ("absolute_path", z([m("/etc/passwd", b"x")]), "/etc/passwd"),
        ("backslash", z([m("a\\b.js", b"x")]), "a\\\\b.js"),
        ("drive_letter", z([m("C:/x.js", b"x")]), "C:/x.js"),
        ("control_character", z([m("a\x07.js", b"x")]), "a\\x07.js"),
        ("symlink", z([m("link", b"/etc/passwd", unix_mode=0o120777)]), "link"),
        ("hardlink", t([tm("a.js", b"x"), tm("b.js", kind=tf.LNKTYPE, linkname="a.js")], gz=True), "b.js"),
        ("special_file", t([tm("fifo", kind=tf.FIFOTYPE)], gz=True), "fifo"),
        ("encrypted", z([m("a.js", b"x", flags=0x0801)]), "a.js"),
        ("duplicate_name", z([m("A.js", b"x"), m("a.js", b"y")]), "a.js"),
        ("crc_mismatch", z([m("a.js", b"hello", crc=1)]), "a.js"),
    ]


async def test_every_rejection_is_4xx_naming_entry_and_rule_and_stores_nothing(
    client: Any, admin_headers: dict[str, str], archive_factory: Any
) -> None:
    await publish(client, admin_headers, make_zip(h5(1)))
    before = await counts(client)
    for rule, data, entry_repr in evil_archives(archive_factory):
        resp = await publish(client, admin_headers, data, version=f"9.{rule}")
        assert resp.status == 400, (rule, await resp.text())
        err = (await resp.json())["error"]
        assert err["code"] == "unsafe_archive", rule
        assert rule in err["message"] and entry_repr in err["message"], (rule, err["message"])
        assert await counts(client) == before, rule
    assert list(client.app[SETTINGS].tmp_dir.glob("publish-*")) == []


async def test_kind_metadata_is_validated(client: Any, admin_headers: dict[str, str]) -> None:
    data = make_zip({"patch.dex": b"dex\n035"})
    resp = await publish(client, admin_headers, data, kind="hotfix", id="fix1", version="1")
    assert resp.status == 400 and "target-binary" in (await resp.json())["error"]["message"]
    resp = await publish(
        client,
        admin_headers,
        data,
        kind="hotfix",
        id="fix1",
        version="1",
        target_binary_range=">=5.2 <6",
        platform="android",
        patch_type="dex",
    )
    assert resp.status == 201
    assert (await resp.json())["meta"]["target_binary_range"] == ">=5.2 <6"
    resp = await publish(
        client,
        admin_headers,
        data,
        kind="hotfix",
        id="fix2",
        version="1",
        target_binary_range="banana",
        platform="android",
        patch_type="dex",
    )
    assert resp.status == 400
    resp = await publish(client, admin_headers, make_zip({"a.html": b"x"}), entry="missing.html")
    assert resp.status == 400 and "entry page" in (await resp.json())["error"]["message"]
    resp = await publish(client, admin_headers, make_zip({"a.html": b"x"}), entry="a.html", vhost="Bad Host!")
    assert resp.status == 400


async def test_roles_and_app_scoping(client: Any, admin_headers: dict[str, str], token_factory: Any) -> None:
    analyst = {"Authorization": f"Bearer {await token_factory('analyst')}"}
    resp = await client.post("/api/v1/apps/bank/uploads", json={"size": 10}, headers=analyst)
    assert resp.status == 403
    rm = {"Authorization": f"Bearer {await token_factory('release-manager')}"}
    assert (await publish(client, rm, make_zip(h5(1)))).status == 201
    resp = await client.post("/api/v1/apps/nope/uploads", json={"size": 10}, headers=rm)
    assert resp.status == 404


async def test_gc_removes_only_unreferenced_blobs(client: Any, admin_headers: dict[str, str]) -> None:
    await publish(client, admin_headers, make_zip(h5(1)))
    store = client.app[BLOBS]

    async def gen() -> Any:
        yield os.urandom(1000)

    orphan = await store.put_stream(gen())
    report = await (
        await client.post("/api/v1/gc", json={"dry_run": True, "grace_seconds": 0}, headers=admin_headers)
    ).json()
    assert report["deleted"] == 1 and report["digests"] == [orphan.sha256]
    assert await store.exists(orphan.sha256)
    recent = await (await client.post("/api/v1/gc", json={}, headers=admin_headers)).json()
    assert recent["deleted"] == 0 and recent["kept_recent"] == 1
    await client.post("/api/v1/gc", json={"grace_seconds": 0}, headers=admin_headers)
    assert not await store.exists(orphan.sha256)
    # Every referenced blob survived: the package still downloads and verifies.
    resp = await client.get(
        "/api/v1/apps/bank/packages/offline/transfer/1.0.0/archive", headers=admin_headers
    )
    assert resp.status == 200
