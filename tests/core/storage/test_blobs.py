"""BlobStore contract, run against the local directory store and S3 on a moto server."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpaas.storage.blobs import BlobDigestMismatch, BlobNotFound, BlobStore
from mpaas.storage.blobs.local import LocalBlobStore
from mpaas.storage.blobs.s3 import S3BlobStore


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    endpoint = request.getfixturevalue("moto_server")
    bucket = request.getfixturevalue("s3_bucket")
    return S3BlobStore(
        bucket,
        "pfx",
        endpoint_url=endpoint,
        spool_dir=tmp_path / "spool",
        multipart_threshold=5 << 20,
        multipart_chunksize=5 << 20,
    )


async def chunks_of(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def read_all(store: BlobStore, digest: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([c async for c in store.read(digest, start, end)])


def visible_objects(store: BlobStore) -> list[str]:
    if isinstance(store, LocalBlobStore):
        base = store.root / "sha256"
        return sorted(str(p) for p in base.rglob("*") if p.is_file()) if base.exists() else []
    assert isinstance(store, S3BlobStore)
    resp = store.client.list_objects_v2(Bucket=store.bucket)
    return sorted(o["Key"] for o in resp.get("Contents", []))


def leftover_temp_files(store: BlobStore) -> list[Path]:
    if isinstance(store, LocalBlobStore):
        return list(store.tmp.glob("*")) if store.tmp.exists() else []
    assert isinstance(store, S3BlobStore) and store.spool_dir is not None
    return list(store.spool_dir.glob("*")) if store.spool_dir.exists() else []


async def test_put_read_roundtrip(store: BlobStore) -> None:
    data = os.urandom(300_000)
    ref = await store.put_stream(chunks_of(data))
    assert ref.sha256 == hashlib.sha256(data).hexdigest() and ref.size == len(data)
    assert await store.exists(ref.sha256)
    assert await store.size(ref.sha256) == len(data)
    assert await read_all(store, ref.sha256) == data
    assert await read_all(store, ref.sha256, 1000, 2000) == data[1000:2000]
    assert await read_all(store, ref.sha256, len(data) - 5) == data[-5:]
    assert [(b.sha256, b.size) async for b in store.list_blobs()] == [(ref.sha256, len(data))]


async def test_same_content_is_stored_once(store: BlobStore) -> None:
    a = await store.put_stream(chunks_of(b"hello"))
    b = await store.put_stream(chunks_of(b"hello"))
    assert a == b
    assert len(visible_objects(store)) == 1


async def test_interrupted_write_leaves_nothing(store: BlobStore, stream: Any) -> None:
    with pytest.raises(ConnectionResetError):
        await store.put_stream(stream([b"a" * 100_000] * 10, fail_after=5))
    assert visible_objects(store) == []
    assert leftover_temp_files(store) == []


async def test_digest_mismatch_is_rejected_and_not_stored(store: BlobStore) -> None:
    with pytest.raises(BlobDigestMismatch):
        await store.put_stream(chunks_of(b"payload"), expected_sha256="0" * 64)
    assert visible_objects(store) == []


async def test_missing_blob(store: BlobStore) -> None:
    digest = "a" * 64
    assert not await store.exists(digest)
    with pytest.raises(BlobNotFound):
        await store.size(digest)
    with pytest.raises(BlobNotFound):
        await read_all(store, digest)


async def test_put_file_and_get_to_file(store: BlobStore, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(50_000))
    ref = await store.put_file(src)
    dest = tmp_path / "dest.bin"
    await store.get_to_file(ref.sha256, dest)
    assert dest.read_bytes() == src.read_bytes()
    await store.delete(ref.sha256)
    assert not await store.exists(ref.sha256)


async def test_s3_multipart_upload_and_presigned_url(
    moto_server: str, s3_bucket: str, tmp_path: Path
) -> None:
    store = S3BlobStore(
        s3_bucket,
        "",
        endpoint_url=moto_server,
        spool_dir=tmp_path,
        multipart_threshold=5 << 20,
        multipart_chunksize=5 << 20,
    )
    data = os.urandom(12 << 20)
    ref = await store.put_stream(chunks_of(data, 1 << 20))
    head = store.client.head_object(Bucket=s3_bucket, Key=store.key(ref.sha256))
    assert "-" in head["ETag"], "a 12 MiB object above the threshold must be a multipart upload"
    url = store.download_url(ref.sha256, expires=60)
    assert url is not None
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        assert hashlib.sha256(await resp.read()).hexdigest() == ref.sha256


async def test_s3_upload_interrupted_mid_multipart_leaves_no_object(
    moto_server: str, s3_bucket: str, tmp_path: Path
) -> None:
    store = S3BlobStore(
        s3_bucket,
        "",
        endpoint_url=moto_server,
        spool_dir=tmp_path,
        multipart_threshold=5 << 20,
        multipart_chunksize=5 << 20,
    )
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(16 << 20))
    sent = 0

    def progress(n: int) -> None:
        nonlocal sent
        sent += n
        if sent > 6 << 20:
            raise ConnectionAbortedError("network dropped")

    with pytest.raises(ConnectionAbortedError):
        await store.upload_file(src, hashlib.sha256(src.read_bytes()).hexdigest(), progress)
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    assert client.list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


async def test_cdn_base_url(moto_server: str, s3_bucket: str) -> None:
    store = S3BlobStore(s3_bucket, "p", endpoint_url=moto_server, cdn_base_url="https://cdn.example.com/")
    assert store.download_url("b" * 64) == f"https://cdn.example.com/p/sha256/bb/{'b' * 62}"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=5000), cut=st.integers(0, 5000), size=st.integers(1, 700))
async def test_local_ranges_match_slices(tmp_path: Path, data: bytes, cut: int, size: int) -> None:
    store = LocalBlobStore(tmp_path / "h")
    ref = await store.put_stream(chunks_of(data, size))
    start = min(cut, len(data))
    assert await read_all(store, ref.sha256, start, start + size) == data[start : start + size]
