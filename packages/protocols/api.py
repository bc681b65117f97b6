"""Client HTTP API: the update check and reports in three protocols, and blob downloads.

Routes: mpaas native (``/client/v1/...``), CodePush (``/v0.1/public/codepush/...`` and
the legacy camelCase ``/updateCheck`` and ``/reportStatus/...``) and Expo Updates
protocol 1 (``/expo/...``). The update checks answer from the in-memory index; only
status reports write to the database.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from aiohttp import hdrs, web
from multidict import istr

from mpaas.appkeys import BLOBS
from mpaas.errors import NotFound, ValidationError
from mpaas.packages.protocols import codepush as cp
from mpaas.packages.protocols import expo, native
from mpaas.packages.releases.errors import InvalidDeploymentKey, InvalidReport
from mpaas.packages.releases.key import RELEASES, ReleaseRuntime
from mpaas.packages.releases.update_index import ChannelIndex, ChannelKey, Lineage, now
from mpaas.storage.blobs.base import check_digest
from mpaas.web.api import Api, dumps, json_response, read_object
from mpaas.web.complete_response import CompleteResponse, ResponseHead
from mpaas.web.downloads import serve_blob

log = logging.getLogger("mpaas.client")
api = Api()

CHECK_BODY = {
    "type": "object",
    "required": ["device_id"],
    "properties": {
        "deployment_key": {"type": "string", "description": "or the X-Deployment-Key header"},
        "device_id": {"type": "string"},
        "user_id": {"type": "string"},
        "os": {"enum": ["ios", "android"]},
        "os_version": {"type": "string"},
        "model": {"type": "string"},
        "region": {"type": "string"},
        "app_version": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "tier": {"type": "string"},
        "packages": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["kind", "id"],
                "properties": {
                    "kind": {"type": "string"},
                    "id": {"type": "string"},
                    "hash": {"type": "string"},
                },
            },
        },
        "discover": {"type": "boolean", "description": "also answer for lineages not installed"},
    },
}
REPORT_BODY = {
    "type": "object",
    "required": ["events"],
    "properties": {
        "deployment_key": {"type": "string"},
        "device_id": {"type": "string"},
        "events": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["event_id", "release_id", "event"],
                "properties": {
                    "event_id": {"type": "string"},
                    "release_id": {"type": "integer"},
                    "event": {
                        "enum": [
                            "download_started",
                            "download_succeeded",
                            "download_failed",
                            "install_succeeded",
                            "install_failed",
                            "rolled_back",
                        ]
                    },
                    "previous_release_id": {"type": "integer"},
                    "detail": {"type": "object"},
                },
            },
        },
    },
}
MAX_EVENTS = 100


def _rt(request: web.Request) -> ReleaseRuntime:
    return request.app[RELEASES]


def base_url(request: web.Request, rt: ReleaseRuntime) -> str:
    return rt.base_url or f"{request.scheme}://{request.host}"


async def _channel_by_key(rt: ReleaseRuntime, key: Any) -> ChannelKey:
    if not isinstance(key, str) or not key:
        raise InvalidDeploymentKey("a deployment key is required (X-Deployment-Key or deployment_key)")
    channel = await rt.index.channel_for_key(key)
    if channel is None:
        raise InvalidDeploymentKey("unknown deployment key")
    return channel


X_DEPLOYMENT_KEY = istr("X-Deployment-Key")


def _etagged(request: web.Request, raw: bytes, head: ResponseHead, etag: str) -> web.StreamResponse:
    """``raw`` with ``head`` and an ETag, or 304 if the client already has that ETag."""
    match = request.headers.get(hdrs.IF_NONE_MATCH)
    if match and etag in [t.strip() for t in match.split(",")]:
        return web.Response(status=304, headers={hdrs.ETAG: etag, **head.fields})
    return CompleteResponse(raw, head, headers={hdrs.ETAG: etag})


# -- native ------------------------------------------------------------------------------


@api.route(
    "POST",
    "/client/v1/updates",
    summary="Update check: the release each installed package should run",
    tag="client",
    auth="client",
    body=CHECK_BODY,
    responses={200: "answer", 304: "unchanged since If-None-Match", 401: "unknown deployment key"},
)
async def check_updates(request: web.Request) -> web.StreamResponse:
    rt = _rt(request)
    raw = await request.read()
    key = request.headers.get(X_DEPLOYMENT_KEY)
    data = None
    if key:
        index = rt.index.ready(key) or await rt.index.get(await _channel_by_key(rt, key))
    else:  # the key in the body (clients that cannot set headers)
        data = native.load_object(raw)
        index = await rt.index.get(await _channel_by_key(rt, data.get("deployment_key")))
    table = native.table_for(index, base_url(request, rt), rt.poll_interval)
    if data is None:
        body, etag = native.native_check(table, raw, now())
    else:
        body, etag = native.native_answer(table, data, now())
    return _etagged(request, body, rt.answer_head, etag)


@api.route(
    "POST",
    "/client/v1/reports",
    summary="Status reports (download, install, rollback); a retried event id counts once",
    tag="client",
    auth="client",
    body=REPORT_BODY,
)
async def reports(request: web.Request) -> web.Response:
    rt = _rt(request)
    data = await read_object(request)
    channel = await _channel_by_key(rt, request.headers.get("X-Deployment-Key") or data.get("deployment_key"))
    events = data.get("events")
    if not isinstance(events, list) or not 0 < len(events) <= MAX_EVENTS:
        raise InvalidReport(f"'events' must be a list of 1-{MAX_EVENTS} events")
    device_id = data.get("device_id") or ""
    if not isinstance(device_id, str):
        raise InvalidReport("device_id must be a string")
    counted = duplicates = 0
    for ev in events:
        if not isinstance(ev, dict):
            raise InvalidReport("each event must be an object")
        release_id, previous = ev.get("release_id"), ev.get("previous_release_id")
        if not isinstance(release_id, int) or (previous is not None and not isinstance(previous, int)):
            raise InvalidReport("release_id and previous_release_id must be integers")
        detail = ev.get("detail") or {}
        if not isinstance(detail, dict) or len(dumps(detail)) > 4096:
            raise InvalidReport("detail must be an object of at most 4 KiB")
        ok = await rt.service.report(
            channel.app_id,
            release_id,
            str(ev.get("event")),
            str(ev.get("event_id") or ""),
            device_id=device_id,
            previous_release_id=previous,
            detail=detail,
        )
        counted, duplicates = counted + ok, duplicates + (not ok)
    return json_response({"counted": counted, "duplicates": duplicates})


@api.route(
    "GET",
    "/client/v1/blobs/{sha256}",
    summary="Download a package, patch, diff or file by sha256 (public, immutable, Range)",
    tag="client",
    auth="public",
    responses={200: "bytes", 206: "range", 302: "redirect to S3/CDN", 304: "unchanged"},
)
async def download_blob(request: web.Request) -> web.StreamResponse:
    digest = request.match_info["sha256"]
    try:
        check_digest(digest)
    except ValueError:
        raise ValidationError("not a sha256 digest") from None
    store = request.app[BLOBS]
    if not await store.exists(digest):
        raise NotFound("no such blob", code="blob_not_found")
    return await serve_blob(request, store, digest)


# -- CodePush ----------------------------------------------------------------------------


async def _codepush_info(request: web.Request) -> dict[str, Any]:
    rt = _rt(request)
    check = cp.parse_check(request.query)
    channel = await _channel_by_key(rt, check.deployment_key)
    index = await rt.index.get(channel)
    decision, _lineage = cp.decide(index, check, now())
    diff = None
    if decision is not None:
        if decision.target is not None:
            rt.index.checks.add(decision.target.id)
        target = decision.target
        if decision.action == "update" and target is not None and target.package and check.package_hash:
            diff = await rt.diffs.get(target.package, check.package_hash)
    return cp.update_info(check, decision, base_url(request, rt), diff)


@api.route(
    "GET",
    "/v0.1/public/codepush/update_check",
    summary="CodePush update check (snake_case)",
    tag="codepush",
    auth="client",
    query={"deployment_key": "string", "app_version": "string", "package_hash": "string", "label": "string"},
)
async def codepush_update_check(request: web.Request) -> web.StreamResponse:
    return CompleteResponse(dumps({"update_info": await _codepush_info(request)}))


@api.route(
    "GET",
    "/updateCheck",
    summary="CodePush update check, legacy camelCase",
    tag="codepush",
    auth="client",
    query={"deploymentKey": "string", "appVersion": "string", "packageHash": "string", "label": "string"},
)
async def codepush_update_check_legacy(request: web.Request) -> web.StreamResponse:
    return CompleteResponse(dumps({"updateInfo": cp.legacy(await _codepush_info(request))}))


def _release_by_label(index: ChannelIndex, label: str | None) -> tuple[Lineage | None, int | None]:
    lineage = index.default_lineage("bundle")
    if lineage is None or not label:
        return lineage, None
    for r in lineage.releases:
        if r.label == label:
            return lineage, r.id
    return lineage, None


async def _codepush_report(request: web.Request, kind: str) -> web.Response:
    rt = _rt(request)
    data = await read_object(request)
    key = cp.param(data, "deployment_key", "deploymentKey")
    channel = await _channel_by_key(rt, key)
    index = await rt.index.get(channel)
    lineage, release_id = _release_by_label(index, cp.param(data, "label", "label"))
    client_id = cp.param(data, "client_unique_id", "clientUniqueId") or ""
    if lineage is None or release_id is None:
        return web.Response(text="OK")  # a report about the binary's own version
    if kind == "download":
        event = "download_succeeded"
    else:
        status = cp.param(data, "status", "status")
        event = {"DeploymentSucceeded": "install_succeeded", "DeploymentFailed": "install_failed"}.get(
            status or "", ""
        )
        if not event:
            raise InvalidReport("status must be DeploymentSucceeded or DeploymentFailed")
    previous_id = None
    previous = cp.param(data, "previous_label_or_app_version", "previousLabelOrAppVersion")
    previous_key = cp.param(data, "previous_deployment_key", "previousDeploymentKey")
    if previous and previous_key in (None, key):
        _lin, previous_id = _release_by_label(index, previous)
    normalized = {k: cp.param(data, k, k) for k in ("label", "status", "app_version")}
    event_id = cp.report_event_id(kind, normalized | {"client": client_id})
    if not client_id:
        event_id += ":" + secrets.token_hex(8)  # without a client id, reports cannot be matched
    await rt.service.report(
        channel.app_id, release_id, event, event_id, device_id=client_id, previous_release_id=previous_id
    )
    return web.Response(text="OK")


@api.route(
    "POST",
    "/v0.1/public/codepush/report_status/deploy",
    summary="CodePush deploy report",
    tag="codepush",
    auth="client",
)
async def codepush_report_deploy(request: web.Request) -> web.Response:
    return await _codepush_report(request, "deploy")


@api.route(
    "POST",
    "/v0.1/public/codepush/report_status/download",
    summary="CodePush download report",
    tag="codepush",
    auth="client",
)
async def codepush_report_download(request: web.Request) -> web.Response:
    return await _codepush_report(request, "download")


@api.route(
    "POST", "/reportStatus/deploy", summary="CodePush deploy report, legacy", tag="codepush", auth="client"
)
async def codepush_report_deploy_legacy(request: web.Request) -> web.Response:
    return await _codepush_report(request, "deploy")


@api.route(
    "POST",
    "/reportStatus/download",
    summary="CodePush download report, legacy",
    tag="codepush",
    auth="client",
)
async def codepush_report_download_legacy(request: web.Request) -> web.Response:
    return await _codepush_report(request, "download")


# -- Expo --------------------------------------------------------------------------------

EXPO_HEADERS = {"expo-protocol-version": "1", "expo-sfv-version": "0", "cache-control": "private, max-age=0"}


async def _expo(request: web.Request, channel_name: str) -> web.Response:
    rt = _rt(request)
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
    base = base_url(request, rt)
    if decision.action == "update" and decision.target is not None:
        body = expo.dumps(await rt.expo.manifest(decision.target, req, base))
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
)
async def expo_manifest_by_header(request: web.Request) -> web.Response:
    return await _expo(request, request.headers.get("expo-channel-name") or "production")
