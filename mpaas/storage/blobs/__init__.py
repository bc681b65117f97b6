"""Blob storage: the BlobStore protocol and its local and S3 implementations."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from mpaas.settings import Settings
from mpaas.storage.blobs.base import BlobDigestMismatch, BlobInfo, BlobNotFound, BlobRef, BlobStore, blob_key

__all__ = [
    "BlobDigestMismatch",
    "BlobInfo",
    "BlobNotFound",
    "BlobRef",
    "BlobStore",
    "blob_key",
    "make_blob_store",
]


def make_blob_store(settings: Settings) -> BlobStore:
    parts = urlsplit(settings.blob_url)
    if parts.scheme == "s3":
        from mpaas.storage.blobs.s3 import S3BlobStore

        return S3BlobStore(
            parts.netloc,
            parts.path,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            spool_dir=settings.tmp_dir,
            cdn_base_url=settings.cdn_base_url,
        )
    from pathlib import Path

    from mpaas.storage.blobs.local import LocalBlobStore

    return LocalBlobStore(Path(unquote(parts.path)))
