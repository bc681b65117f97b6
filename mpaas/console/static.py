"""The console's shell and built assets, served from the installed package.

``index.html`` answers every page path (the single-page app routes in the browser);
assets come from ``static/assets/``. Content-hashed names (``index-3fa9c2d1.js``) are
cached for a year as immutable; other files are revalidated by ETag. Text is gzipped
when the browser accepts it (a ``.gz`` built next to a file is used as it is). Files
are read once per process and kept in memory: the whole console is a few hundred KB.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from mpaas.errors import NotFound
from mpaas.web.downloads import IMMUTABLE, etag_matches

STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSETS_DIR = STATIC_DIR / "assets"
ASSET_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: A name with a content hash of at least 8 characters before its extension.
HASHED_RE = re.compile(r".+[.-][A-Za-z0-9_-]{8,}\.[A-Za-z0-9]+")
COMPRESSIBLE = (".js", ".mjs", ".css", ".html", ".svg", ".json", ".map", ".txt", ".xml")
MIN_GZIP = 256
#: No inline or remote script; styles may be inline because the chart library sets
#: ``style`` attributes in the markup of its tooltips.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str


_cache: dict[Path, StaticFile] = {}


def load(path: Path) -> StaticFile:
    cached = _cache.get(path)
    if cached is not None:
        return cached
    if not path.is_file():
        raise NotFound(f"no console file {path.name!r}", code="not_found")
    body = path.read_bytes()
    gz_path = path.with_name(path.name + ".gz")
    gzipped: bytes | None = None
    if gz_path.is_file():
        gzipped = gz_path.read_bytes()
    elif path.suffix in COMPRESSIBLE and len(body) >= MIN_GZIP:
        gzipped = gzip.compress(body, compresslevel=9, mtime=0)
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or path.suffix in (".js", ".mjs", ".json", ".svg"):
        content_type += "; charset=utf-8"
    file = StaticFile(body, gzipped, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    _cache[path] = file
    return file


def respond(request: web.Request, file: StaticFile, cache_control: str) -> web.Response:
    headers = {"Cache-Control": cache_control, "ETag": file.etag, "X-Content-Type-Options": "nosniff"}
    if file.gzipped is not None:
        headers["Vary"] = "Accept-Encoding"
    if etag_matches(request, file.etag):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = file.content_type
    body = file.body
    if file.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", "").lower():
        headers["Content-Encoding"] = "gzip"
        body = file.gzipped
    return web.Response(body=body, headers=headers)


def shell(request: web.Request) -> web.Response:
    response = respond(request, load(STATIC_DIR / "index.html"), "no-cache")
    response.headers.update(SECURITY_HEADERS)
    return response


def asset(request: web.Request, name: str) -> web.Response:
    if not ASSET_NAME_RE.fullmatch(name) or ".." in name or name.endswith(".gz"):
        raise NotFound(f"no console asset {name[:80]!r}", code="not_found")
    cache = IMMUTABLE if HASHED_RE.fullmatch(name) else "no-cache"
    return respond(request, load(ASSETS_DIR / name), cache)


def is_page(path: str) -> bool:
    """A page of the app: no dot in the last segment, and not under api/ or assets/."""
    segments = path.strip("/").split("/")
    return "." not in segments[-1] and segments[0] not in ("api", "assets")
