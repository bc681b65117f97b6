"""Public TUF routes: ``/tuf/{app}/metadata/{file}`` and ``/tuf/{app}/targets/{path}``.

Consistent snapshots: every file but ``timestamp.json`` (and the unversioned
``root.json`` alias) has a version or a hash in its name and never changes, so it is
served as immutable; ``timestamp.json`` is ``no-cache``. Anything missing is a 404,
the one error python-tuf's ngclient treats as "no such file" (for ``N+1.root.json``
it ends the root walk; any other status aborts the update).
"""

from __future__ import annotations

from aiohttp import web

from mpaas.appkeys import BLOBS, DB
from mpaas.errors import NotFound
from mpaas.identity import tenancy
from mpaas.signing.service_key import SIGNING
from mpaas.signing.tuf_store import parse_metadata_filename
from mpaas.web.api import Api
from mpaas.web.downloads import IMMUTABLE, serve_blob

api = Api()
NO_CACHE = "no-cache"


@api.route(
    "GET",
    "/tuf/{app}/metadata/{filename}",
    summary="TUF metadata: N.root.json, timestamp.json, V.snapshot.json, V.targets.json",
    tag="signing",
    auth="public",
    responses={200: "signed metadata", 404: "no such file"},
)
async def tuf_metadata(request: web.Request) -> web.Response:
    app_name, filename = request.match_info["app"], request.match_info["filename"]
    parsed = parse_metadata_filename(filename)
    raw = await request.app[SIGNING].metadata(app_name, filename) if parsed is not None else None
    if parsed is None or raw is None:
        raise NotFound(f"no metadata file {filename!r} for app {app_name!r}", code="tuf_metadata_not_found")
    _role, version = parsed
    return web.Response(
        body=raw,
        content_type="application/json",
        headers={"Cache-Control": IMMUTABLE if version is not None else NO_CACHE},
    )


@api.route(
    "GET",
    "/tuf/{app}/targets/{path:.*}",
    summary="A TUF target file, named {dir/}{sha256}.{basename} (consistent snapshots)",
    tag="signing",
    auth="public",
    responses={200: "the file", 206: "a byte range", 404: "no such target"},
)
async def tuf_target(request: web.Request) -> web.StreamResponse:
    app = await tenancy.get_app(request.app[DB], request.match_info["app"])
    blob = await request.app[SIGNING].resolve_target(app, request.match_info["path"])
    # No redirect to S3 or a CDN: whether a TUF client follows one depends on its
    # fetcher, and every client must be able to update. Put a CDN in front instead.
    return await serve_blob(request, request.app[BLOBS], blob.sha256, allow_redirect=False)
