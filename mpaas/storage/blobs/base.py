"""The BlobStore protocol: content-addressed, streaming, atomic.

Objects are named by the sha256 of their bytes (``sha256/ab/cdef…``). A write either
produces the complete object under its final name or nothing: local writes go to a
temp file that is renamed into place, S3 writes are spooled to disk, hashed, then
uploaded under the final key (a multipart upload becomes visible only when it
completes, and is aborted on failure).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from mpaas.errors import BadRequest, NotFound

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
READ_CHUNK = 256 * 1024


class BlobNotFound(NotFound):
    code = "blob_not_found"


class BlobDigestMismatch(BadRequest):
    code = "digest_mismatch"


@dataclass(frozen=True, slots=True)
class BlobRef:
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class BlobInfo:
    sha256: str
    size: int
    modified: datetime


def check_digest(sha256: str) -> str:
    if not SHA256_RE.fullmatch(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return sha256


def blob_key(sha256: str) -> str:
    check_digest(sha256)
    return f"sha256/{sha256[:2]}/{sha256[2:]}"


class Hasher:
    """Counts and hashes bytes as they stream past."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._h.update(chunk)
        self.size += len(chunk)

    @property
    def hexdigest(self) -> str:
        return self._h.hexdigest()


@runtime_checkable
class BlobStore(Protocol):
    async def put_stream(
        self, chunks: AsyncIterable[bytes], *, expected_sha256: str | None = None
    ) -> BlobRef:
        """Store a stream; verify it against ``expected_sha256`` when given."""

    async def put_file(self, path: Path, *, sha256: str | None = None) -> BlobRef:
        """Store a local file by content; ``sha256`` skips re-hashing when already known."""

    async def exists(self, sha256: str) -> bool: ...

    async def size(self, sha256: str) -> int:
        """Size in bytes; raises BlobNotFound."""

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes [start, end) of a blob; raises BlobNotFound."""

    async def get_to_file(self, sha256: str, dest: Path) -> None:
        """Copy a blob into a local file, verifying its digest."""

    async def delete(self, sha256: str) -> None: ...

    def list_blobs(self) -> AsyncIterator[BlobInfo]:
        """Every stored blob with its size and age, for garbage collection."""

    def download_url(self, sha256: str, *, expires: int = 3600, filename: str | None = None) -> str | None:
        """A direct (presigned or CDN) URL, or None when the server must stream the bytes."""

    async def check(self) -> None:
        """Raise if the store cannot be used (for /healthz)."""

    async def close(self) -> None: ...


async def copy_verified(chunks: AsyncIterable[bytes], sha256: str, dest: Path, where: str) -> None:
    """Write a blob's bytes to ``dest``, failing if they do not hash to ``sha256``."""
    hasher = Hasher()
    with open(dest, "wb") as out:
        async for chunk in chunks:
            hasher.update(chunk)
            await asyncio.to_thread(out.write, chunk)
    if hasher.hexdigest != sha256:
        raise BlobDigestMismatch(f"blob {sha256} is corrupt {where} (read {hasher.hexdigest})")
