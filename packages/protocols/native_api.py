"""Client routes of the mpaas native protocol: update check, status reports, blob downloads
(by signed, expiring URLs: :mod:`~mpaas.packages.protocols.links`).

The update check answers from the in-memory index through the compiled kernel
(:mod:`~mpaas.packages.protocols.native`); only status reports write to the database.
"""

from __future__ import annotations

from typing import Any

from aiohttp import hdrs, web

from mpaas.appkeys import BLOBS
from mpaas.errors import NotFound, PayloadTooLarge, ValidationError
from mpaas.packages.models import KINDS
from mpaas.packages.protocols import native
from mpaas.packages.protocols.common import blob_links, channel_by_key, runtime_of, url_signer
from mpaas.packages.protocols.links import SIG_HEX
from mpaas.packages.releases.channel_index import now
from mpaas.packages.releases.errors import InvalidReport, ReleaseNotFound
from mpaas.packages.releases.reports import EVENTS
from mpaas.storage.blobs.base import check_digest
from mpaas.web.api import (
    DEPLOYMENT_KEY_HEADER,
    LEGACY_DEPLOYMENT_KEY_HEADER,
    Api,
    deployment_key_header,
    dumps,
    json_response,
    pattern_schema,
    read_bounded,
    read_object,
    refuse_oversized,
)
from mpaas.web.complete_response import CompleteResponse, ResponseHead
from mpaas.web.downloads import PRIVATE_IMMUTABLE, serve_blob

api = Api()

_VERSION = pattern_schema(
    r"v?[0-9]{1,9}(?:\.[0-9]{1,9}){0,2}(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?", maxLength=64
)
CHECK_BODY = {
    "type": "object",
    "required": ["device_id"],
    "properties": {
        "deployment_key": {"type": "string", "description": "or the X-Deployment-Key header"},
        "device_id": {"type": "string", "minLength": 1, "maxLength": 128},
        "user_id": {"type": "string", "maxLength": 128},
        "os": {"enum": ["ios", "android"]},
        "os_version": _VERSION,
        "model": {"type": "string", "maxLength": 128},
        "region": {"type": "string", "maxLength": 32},
        "app_version": _VERSION,
        "tags": {"type": "array", "maxItems": 50, "items": {"type": "string"}},
        "tier": {"type": "string", "maxLength": 64},
        "packages": {
            "type": "array",
            "maxItems": 500,
            "items": {
                "type": "object",
                "required": ["kind", "id"],
                "properties": {
                    "kind": {"enum": list(KINDS)},
                    "id": {"type": "string", "minLength": 1, "maxLength": 128},
                    "hash": {"type": "string", "maxLength": 64},
                },
            },
        },
        "discover": {"type": "boolean", "description": "also answer for lineages not installed"},
    },
}
_RELEASE_ID = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
REPORT_BODY = {
    "type": "object",
    "required": ["events"],
    "properties": {
        "deployment_key": {"type": "string"},
        "device_id": {"type": "string"},
        "events": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "items": {
                "type": "object",
                "required": ["event_id", "release_id", "event"],
                "properties": {
                    "event_id": {"type": "string", "minLength": 1, "maxLength": 128},
                    "release_id": _RELEASE_ID,
                    "event": {"enum": list(EVENTS)},
                    "previous_release_id": _RELEASE_ID,
                    "detail": {
                        "type": "object",
                        "maxProperties": 8,
                        "propertyNames": {"maxLength": 24},
                        "additionalProperties": {"type": "string", "maxLength": 48},
                        "description": "at most 4096 bytes as JSON",
                    },
                },
            },
        },
    },
}
MAX_EVENTS = 100
MAX_DETAIL = 4096
#: Release ids are 32-bit columns: a larger id cannot exist, and would overflow the driver.
MAX_RELEASE_ID = 2**31 - 1
#: Body limits (docs/protocol.md): an update check lists installed packages, a few KB;
#: a report batch is at most 100 events of at most 4 KiB detail each.
CHECK_LIMIT = 64 * 1024
REPORTS_LIMIT = 512 * 1024
#: Routes that take no body (GET) refuse a declared one past this.
NO_BODY_LIMIT = 4 * 1024
_TOO_LARGE = f"request body is larger than this endpoint's limit of {CHECK_LIMIT} bytes"


def _etagged(request: web.Request, raw: bytes, head: ResponseHead, etag: str) -> web.StreamResponse:
    """``raw`` with ``head`` and an ETag, or 304 if the client already has that ETag."""
    match = request.headers.get(hdrs.IF_NONE_MATCH)
    if match and etag in [t.strip() for t in match.split(",")]:
        return web.Response(status=304, headers={hdrs.ETAG: etag, **head.fields})
    return CompleteResponse(raw, head, headers={hdrs.ETAG: etag})


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
    rt = runtime_of(request)
    length = request.content_length  # constant-time size check on the hot path
    if length is None:
        raw = await read_bounded(request, CHECK_LIMIT)  # chunked: cut at the limit
    elif length > CHECK_LIMIT:
        raise PayloadTooLarge(_TOO_LARGE)
    else:
        raw = await request.read()
    headers = request.headers
    key = headers.get(DEPLOYMENT_KEY_HEADER) or headers.get(LEGACY_DEPLOYMENT_KEY_HEADER)
    data = None
    if key:
        index = rt.index.ready(key) or await rt.index.get(await channel_by_key(rt, key))
    else:  # the key in the body (clients that cannot set headers)
        data = native.load_object(raw)
        index = await rt.index.get(await channel_by_key(rt, data.get("deployment_key")))
    table = native.table_for(index, blob_links(request, rt), rt.poll_interval)
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
    rt = runtime_of(request)
    data = await read_object(request, REPORTS_LIMIT)
    channel = await channel_by_key(rt, deployment_key_header(request) or data.get("deployment_key"))
    events = data.get("events")
    if not isinstance(events, list) or not 0 < len(events) <= MAX_EVENTS:
        raise InvalidReport(f"'events' must be a list of 1-{MAX_EVENTS} events")
    device_id = data.get("device_id") or ""
    if not isinstance(device_id, str):
        raise InvalidReport("device_id must be a string")
    # The whole batch is validated before anything is stored: a malformed event is a 400
    # and stores nothing. An unknown release is answered per event; the others are stored.
    checked = [_check_event(ev) for ev in events]
    rejected: list[dict[str, str]] = []
    counted = duplicates = 0
    for event_id, release_id, event, previous, detail in checked:
        try:
            ok = await rt.service.report(
                channel.app_id,
                release_id,
                event,
                event_id,
                device_id=device_id,
                previous_release_id=previous,
                detail=detail,
            )
        except ReleaseNotFound as exc:
            rejected.append({"event_id": event_id, "code": exc.code, "message": exc.message})
            continue
        counted, duplicates = counted + ok, duplicates + (not ok)
    out: dict[str, Any] = {"counted": counted, "duplicates": duplicates}
    if rejected:  # present only when some event was not stored: the answer of 0.1 otherwise
        out["rejected"] = rejected
    return json_response(out)


def _release_id(value: Any, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if type(value) is not int or not 0 < value <= MAX_RELEASE_ID:
        raise InvalidReport(f"release_id and previous_release_id must be integers from 1 to {MAX_RELEASE_ID}")
    return value


def _check_event(ev: Any) -> tuple[str, int, str, int | None, dict[str, Any]]:
    """One event, validated: (event_id, release_id, event, previous_release_id, detail)."""
    if not isinstance(ev, dict):
        raise InvalidReport("each event must be an object")
    release_id = _release_id(ev.get("release_id"))
    previous = _release_id(ev.get("previous_release_id"), optional=True)
    event, event_id = ev.get("event"), ev.get("event_id")
    if not isinstance(event, str) or event not in EVENTS:
        raise InvalidReport(f"event must be one of {', '.join(EVENTS)}")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 128:
        raise InvalidReport("event_id must be a string of 1-128 characters")
    detail = ev.get("detail") or {}
    if not isinstance(detail, dict) or len(dumps(detail)) > MAX_DETAIL:
        raise InvalidReport(f"detail must be an object of at most {MAX_DETAIL} bytes")
    return event_id, int(release_id or 0), event, previous, detail


@api.route(
    "GET",
    "/client/v1/blobs/{sha256}",
    summary="Download a package, patch, diff or file by the signed, expiring URL of an update answer",
    tag="client",
    auth="public",
    responses={
        200: "bytes",
        206: "range",
        302: "redirect to S3/CDN",
        304: "unchanged",
        403: "download_url_invalid (not signed by this server) or download_url_expired (check again)",
        404: "no such blob",
    },
    head=True,
    params={"sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
    query={
        "expires": {"type": "string", "pattern": "^[0-9]{1,12}$", "description": "Unix time"},
        "sig": {"type": "string", "pattern": f"^[0-9a-f]{{{SIG_HEX}}}$"},
    },
    required=("expires", "sig"),
)
async def download_blob(request: web.Request) -> web.StreamResponse:
    refuse_oversized(request, NO_BODY_LIMIT)
    digest = request.match_info["sha256"]
    try:
        check_digest(digest)
    except ValueError:
        raise ValidationError("not a sha256 digest") from None
    # The grant comes first: without it, not even whether the blob exists is told.
    query = request.query
    url_signer(request).verify(digest, query.get("expires"), query.get("sig"))
    store = request.app[BLOBS]
    if not await store.exists(digest):
        raise NotFound("no such blob", code="blob_not_found")
    # private: a shared cache must not keep serving the bytes after the URL expired.
    return await serve_blob(request, store, digest, cache_control=PRIVATE_IMMUTABLE)
