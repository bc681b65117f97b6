"""Serving blobs over HTTP: Range, ETag, Content-Length, and redirects to S3 or a CDN.

Blobs are immutable and named by their sha256, so the strong ETag is the digest
and responses may be cached for ever. Bodies are never content-encoded: the
CodePush Android client sends ``Accept-Encoding: identity`` and rejects a body
whose length differs from Content-Length.
"""

from __future__ import annotations

import re

from aiohttp import web

from mpaas.errors import RangeNotSatisfiable
from mpaas.storage.blobs import BlobStore

RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
IMMUTABLE = "public, max-age=31536000, immutable"
#: For bytes behind an expiring URL: the device may keep them, a shared cache may not.
PRIVATE_IMMUTABLE = "private, max-age=31536000, immutable"


def etag_matches(request: web.Request, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (a list of tags, compared weakly as RFC 9110
    asks for this header: ``W/"x"`` matches ``"x"``), so the answer may be a 304."""
    header = request.headers.get("If-None-Match", "")
    return etag in {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The single byte range [start, end) asked for, or None for the whole body.

    Multi-range requests are answered with the whole body, as RFC 9110 allows.
    """
    if not header or "," in header:
        return None
    m = RANGE_RE.fullmatch(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if m.group(1):
        start = int(m.group(1))
        end = int(m.group(2)) + 1 if m.group(2) else size
    else:
        suffix = int(m.group(2))
        if suffix == 0:
            raise RangeNotSatisfiable(f"empty suffix range; the blob has {size} bytes")
        start, end = max(0, size - suffix), size
    end = min(end, size)
    if start >= size or start >= end:
        raise RangeNotSatisfiable(f"range {header!r} is outside the blob's {size} bytes")
    return start, end


async def serve_blob(
    request: web.Request,
    store: BlobStore,
    sha256: str,
    *,
    filename: str | None = None,
    content_type: str = "application/octet-stream",
    allow_redirect: bool = True,
    cache_control: str = IMMUTABLE,
) -> web.StreamResponse:
    """Answer a GET or HEAD for a blob: 302 to a direct URL, 304, 206 or 200."""
    etag = f'"{sha256}"'
    if allow_redirect:
        url = store.download_url(sha256, filename=filename)
        if url is not None:
            raise web.HTTPFound(url, headers={"Cache-Control": "private, max-age=60"})
    if etag_matches(request, etag):
        return web.Response(status=304, headers={"ETag": etag, "Cache-Control": cache_control})
    size = await store.size(sha256)
    if_range = request.headers.get("If-Range")
    wanted = parse_range(request.headers.get("Range"), size) if if_range in (None, etag) else None
    start, end = wanted if wanted is not None else (0, size)
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": cache_control,
        "Content-Type": content_type,
        "Content-Length": str(end - start),
    }
    if filename:
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    if wanted is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    response = web.StreamResponse(status=206 if wanted is not None else 200, headers=headers)
    await response.prepare(request)
    if request.method != "HEAD":
        async for chunk in store.read(sha256, start, end):
            await response.write(chunk)
    await response.write_eof()
    return response
