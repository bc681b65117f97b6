"""Blob store on S3 (or any S3-compatible service) through boto3.

boto3 is synchronous, so every call runs in a worker thread. A write is spooled to a
local temp file while it is hashed, because the object's key is its sha256 and S3
has no rename; the finished file is then uploaded under its final key, in parts above
``multipart_threshold``. S3 makes an object visible only when its PUT or its
CompleteMultipartUpload succeeds, and boto3 aborts a failed multipart upload, so an
interrupted write leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path
from typing import Any

from mpaas.storage.blobs.base import (
    READ_CHUNK,
    BlobDigestMismatch,
    BlobInfo,
    BlobNotFound,
    BlobRef,
    Hasher,
    blob_key,
    copy_verified,
)


class S3BlobStore:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        spool_dir: Path | None = None,
        multipart_threshold: int = 16 << 20,
        multipart_chunksize: int = 8 << 20,
        cdn_base_url: str | None = None,
        client: Any = None,
    ) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.spool_dir = spool_dir
        self.cdn_base_url = cdn_base_url.rstrip("/") if cdn_base_url else None
        self.client: Any = client or boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=32),
        )
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            use_threads=True,
            max_concurrency=4,
        )

    def key(self, sha256: str) -> str:
        k = blob_key(sha256)
        return f"{self.prefix}/{k}" if self.prefix else k

    async def put_stream(
        self, chunks: AsyncIterable[bytes], *, expected_sha256: str | None = None
    ) -> BlobRef:
        if self.spool_dir is not None:
            await asyncio.to_thread(self.spool_dir.mkdir, parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="s3spool-", dir=self.spool_dir)
        spool = Path(name)
        try:
            hasher = Hasher()
            with os.fdopen(fd, "wb") as fh:
                async for chunk in chunks:
                    hasher.update(chunk)
                    await asyncio.to_thread(fh.write, chunk)
            digest = hasher.hexdigest
            if expected_sha256 is not None and expected_sha256 != digest:
                raise BlobDigestMismatch(f"content sha256 {digest} does not match expected {expected_sha256}")
            if not await self.exists(digest):
                await self.upload_file(spool, digest)
            return BlobRef(digest, hasher.size)
        finally:
            await asyncio.to_thread(spool.unlink, missing_ok=True)

    async def upload_file(
        self, path: Path, sha256: str, progress: Callable[[int], None] | None = None
    ) -> None:
        await asyncio.to_thread(
            self.client.upload_file,
            str(path),
            self.bucket,
            self.key(sha256),
            ExtraArgs={"ContentType": "application/octet-stream"},
            Config=self.transfer,
            Callback=progress,
        )

    async def put_file(self, path: Path, *, sha256: str | None = None) -> BlobRef:
        if sha256 is None:
            digest, size = await asyncio.to_thread(_hash_file, path)
        else:
            digest, size = sha256, (await asyncio.to_thread(path.stat)).st_size
        if not await self.exists(digest):
            await self.upload_file(path, digest)
        return BlobRef(digest, size)

    async def _head(self, sha256: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            result: dict[str, Any] = await asyncio.to_thread(
                self.client.head_object, Bucket=self.bucket, Key=self.key(sha256)
            )
            return result
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    async def exists(self, sha256: str) -> bool:
        return await self._head(sha256) is not None

    async def size(self, sha256: str) -> int:
        head = await self._head(sha256)
        if head is None:
            raise BlobNotFound(f"blob {sha256} not found")
        return int(head["ContentLength"])

    async def read(self, sha256: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        from botocore.exceptions import ClientError

        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key(sha256)}
        if start or end is not None:
            if end is not None and end <= start:
                return
            params["Range"] = f"bytes={start}-" + ("" if end is None else str(end - 1))
        try:
            obj = await asyncio.to_thread(self.client.get_object, **params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise BlobNotFound(f"blob {sha256} not found") from None
            raise
        body = obj["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, READ_CHUNK):
                yield chunk
        finally:
            body.close()

    async def get_to_file(self, sha256: str, dest: Path) -> None:
        await copy_verified(self.read(sha256), sha256, dest, "in S3")

    async def delete(self, sha256: str) -> None:
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=self.key(sha256))

    async def list_blobs(self) -> AsyncIterator[BlobInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        root = f"{self.prefix}/sha256/" if self.prefix else "sha256/"
        pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=root))
        while (page := await asyncio.to_thread(next, pages, None)) is not None:
            for item in page.get("Contents", []):
                digest = item["Key"][len(root) :].replace("/", "")
                yield BlobInfo(digest, int(item["Size"]), item["LastModified"])

    def download_url(self, sha256: str, *, expires: int = 3600, filename: str | None = None) -> str | None:
        if self.cdn_base_url:
            return f"{self.cdn_base_url}/{self.key(sha256)}"
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key(sha256)}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        url: str = self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires)
        return url

    async def check(self) -> None:
        await asyncio.to_thread(self.client.head_bucket, Bucket=self.bucket)

    async def close(self) -> None:
        return None


def _hash_file(path: Path) -> tuple[str, int]:
    hasher = Hasher()
    with open(path, "rb") as fh:
        while chunk := fh.read(READ_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest, hasher.size
