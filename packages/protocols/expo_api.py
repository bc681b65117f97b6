"""Client routes of the Expo Updates protocol 1: the manifest, by channel in the URL or header."""

from __future__ import annotations

import logging

from aiohttp import web

from mpaas.packages.protocols import expo
from mpaas.packages.protocols.common import blob_links, runtime_of
from mpaas.packages.releases.channel_index import now
from mpaas.packages.releases.key import ReleaseRuntime
from mpaas.web.api import Api, Schema, refuse_oversized

log = logging.getLogger("mpaas.client")
api = Api()

#: The manifest request is a GET: a declared body past this is refused (docs/protocol.md).
NO_BODY_LIMIT = 4 * 1024
_HEADER_TEXT = "^[!-~](?:[ -~]{0,254}[!-~])?$"  # printable ASCII, no edge spaces (HTTP strips them)
#: The request headers of the Expo Updates protocol (the query's platform and
#: runtime-version are accepted too, for clients that cannot set headers).
REQUEST_HEADERS: dict[str, Schema] = {
    "expo-platform": {"enum": ["ios", "android"]},
    "expo-runtime-version": {"type": "string", "pattern": _HEADER_TEXT},
    "expo-protocol-version": {"enum": ["0", "1"]},
    "expo-current-update-id": {"type": "string", "pattern": _HEADER_TEXT},
}
REQUIRED_HEADERS = ("expo-platform", "expo-runtime-version")
EXPO_HEADERS = {"expo-protocol-version": "1", "expo-sfv-version": "0", "cache-control": "private, max-age=0"}


async def _expo(request: web.Request, channel_name: str) -> web.Response:
    refuse_oversized(request, NO_BODY_LIMIT)
    rt = runtime_of(request)
    app_name = request.match_info["app"]
    channel = await rt.index.channel_named(app_name, channel_name)
    if channel is None:
        raise web.HTTPNotFound()
    req = expo.parse_request(request.headers, request.query)
    index = await rt.index.get(channel)
    package = request.query.get("package")
    lineage = index.lineages.get(("bundle", package)) if package else index.default_lineage("bundle")
    if lineage is None:
        return web.Response(status=204, headers=EXPO_HEADERS)
    held = expo.held_release(lineage, req)
    decision = lineage.decide(req.device(), held, bool(req.current_update_id), now())
    if decision.target is not None:
        rt.index.checks.add(decision.target.id)
    links = blob_links(request, rt)
    if decision.action == "update" and decision.target is not None:
        body = expo.dumps(await rt.expo.manifest(decision.target, req, links))
        if not req.wants_multipart:
            return web.Response(
                body=body,
                content_type="application/expo+json",
                headers=EXPO_HEADERS | {"expo-protocol-version": "0"},
            )
        parts = [
            ("manifest", body, await _signature(rt, app_name, body, req)),
            ("extensions", b'{"assetRequestHeaders":{}}', {}),
        ]
    elif decision.action in ("current", "rollback_to_embedded") and req.wants_multipart:
        kind = "noUpdateAvailable" if decision.action == "current" else "rollBackToEmbedded"
        body = expo.dumps(expo.directive(kind, decision.target))
        parts = [("directive", body, await _signature(rt, app_name, body, req))]
    else:
        return web.Response(status=204, headers=EXPO_HEADERS)
    raw, content_type = expo.multipart(parts)
    return web.Response(body=raw, headers=EXPO_HEADERS | {"Content-Type": content_type})


async def _signature(rt: ReleaseRuntime, app_name: str, body: bytes, req: expo.ExpoRequest) -> dict[str, str]:
    if rt.signer is None:
        if req.expects_signature:
            log.warning(
                "expo client expects a signature but signing is not configured", extra={"app": app_name}
            )
        return {}
    value = await rt.signer(app_name, body)
    if value is None:
        if req.expects_signature:
            log.warning(
                "expo client expects a signature but the app has no Expo key", extra={"app": app_name}
            )
        return {}
    return {"expo-signature": value}


@api.route(
    "GET",
    "/expo/{app}/{channel}/manifest",
    summary="Expo Updates protocol 1 manifest (multipart/mixed)",
    tag="expo",
    auth="public",
    responses={200: "manifest or directive", 204: "no update"},
    headers=REQUEST_HEADERS,
    required=REQUIRED_HEADERS,
    query={"package": "string"},
)
async def expo_manifest(request: web.Request) -> web.Response:
    return await _expo(request, request.match_info["channel"])


@api.route(
    "GET",
    "/expo/{app}/manifest",
    summary="Expo Updates manifest; the channel comes from expo-channel-name (default production)",
    tag="expo",
    auth="public",
    responses={200: "manifest or directive", 204: "no update"},
    headers=REQUEST_HEADERS | {"expo-channel-name": {"type": "string", "pattern": _HEADER_TEXT}},
    required=REQUIRED_HEADERS,
    query={"package": "string"},
)
async def expo_manifest_by_header(request: web.Request) -> web.Response:
    return await _expo(request, request.headers.get("expo-channel-name") or "production")
