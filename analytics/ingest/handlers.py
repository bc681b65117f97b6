"""The ingest routes: native ``POST /client/v1/events`` and Segment's ``/v1/*``.

Each does only what decides whether the request can ever succeed, then spools the raw
body: authenticate (a bad key is refused before the body is read when the key is in a
header), bound the body, check that it parses into event objects within the limits.
Answers follow the 4xx rule: 400/401/413/415 only for input that can never succeed;
a spool that cannot write answers 503, and one with too much waiting answers 429, both
with ``Retry-After``, so the SDKs keep the batch and retry.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from aiohttp import web
from multidict import istr

from mpaas.analytics.errors import EventTooLarge, InvalidDeploymentKey, InvalidWriteKey, RetryLater
from mpaas.analytics.ingest.auth import Sender, basic_user
from mpaas.analytics.ingest.body import (
    NativeBatch,
    SegmentBatch,
    SegmentMessage,
    check_events,
    decode,
    decode_batch,
    read_body,
)
from mpaas.analytics.runtime import ANALYTICS, AnalyticsRuntime
from mpaas.analytics.spool.record import NATIVE, SEGMENT
from mpaas.errors import ValidationError
from mpaas.web.api import Api, Handler, deployment_key_header
from mpaas.web.complete_response import CompleteResponse
from mpaas.web.edge import error_response

api = Api()
SUCCESS = b'{"success":true}'
AUTHORIZATION = istr("Authorization")
#: Segment's routes: the batch ones (``b`` is the mobile SDKs', ``import`` the old Android
#: SDK's) and one per message type.
BATCH_ROUTES = ("batch", "b", "import")
SINGLE_ROUTES = ("track", "identify", "page", "screen", "group", "alias")

WRITE_KEY = {"type": "string", "description": "or HTTP Basic auth with the key as user name"}
SEGMENT_BATCH_BODY = {
    "type": "object",
    "required": ["batch"],
    "description": "a batch: {batch: [messages], sentAt, context, writeKey}",
    "properties": {
        "batch": {"type": "array", "minItems": 1, "items": {"type": "object"}},
        "sentAt": {"type": "string", "format": "date-time"},
        "writeKey": WRITE_KEY,
    },
}
SEGMENT_MESSAGE_BODY = {
    "type": "object",
    "description": "one message (Segment's spec for its type)",
    "properties": {"writeKey": WRITE_KEY},
}
NATIVE_BODY = {
    "type": "object",
    "required": ["events"],
    "description": "see docs/protocol.md, 'Events'",
    "properties": {
        "deployment_key": {"type": "string", "description": "or the X-Deployment-Key header"},
        "sent_at": {"type": "string", "format": "date-time"},
        "user_id": {"type": "string"},
        "anonymous_id": {"type": "string"},
        "context": {"type": "object"},
        "events": {"type": "array", "minItems": 1, "items": {"type": "object"}},
    },
}
RESPONSES = {
    200: "durably spooled",
    400: "malformed; never retry",
    401: "unknown key",
    413: "over the size limits",
    429: "overloaded; Retry-After",
    503: "spool unavailable; Retry-After",
}


#: A JSON ``\u0000`` escape, not itself escaped (an odd run of backslashes before ``u0000``).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def refuse_nul(raw: bytes) -> None:
    """400 for a body whose strings hold U+0000, as the document promises (PostgreSQL
    refuses it in text); JSON cannot hold a raw NUL. A body with no backslash at all (most
    are: UTF-8 SDKs escape little) is cleared by one memchr, about 60 times cheaper than
    the six-byte search, whose skip table stalls on the many ``0`` of ids and timestamps."""
    if b"\\" in raw and b"\\u0000" in raw and _NUL_ESCAPE.search(raw):
        raise ValidationError("the body holds a NUL character (\\u0000)")


def _retrying(handler: Handler) -> Handler:
    """Answer :class:`RetryLater` with its status and ``Retry-After``."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except RetryLater as exc:
            return error_response(exc.status, exc.code, exc.message, {"Retry-After": str(exc.retry_after)})

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def batch_id(app: str, ids: list[Any]) -> str:
    """A broker dedupe id: the same app and message ids give the same id (a retried batch)."""
    if not all(isinstance(i, str | int) and not isinstance(i, bool) and i != "" for i in ids):
        return ""
    digest = hashlib.sha256(app.encode())
    for i in ids:
        digest.update(b"\x00" + str(i).encode())
    return digest.hexdigest()


async def _write_key(rt: AnalyticsRuntime, key: Any) -> Sender:
    sender = await rt.write_keys.get(key) if isinstance(key, str) else None
    if sender is None:
        raise InvalidWriteKey("unknown or expired write key (HTTP Basic user name, or writeKey in the body)")
    return sender


def segment_handler(endpoint: str) -> Handler:
    single = endpoint in SINGLE_ROUTES

    async def segment(request: web.Request) -> web.StreamResponse:
        rt = request.app[ANALYTICS]
        header_key = basic_user(request.headers.get(AUTHORIZATION))
        sender = await _write_key(rt, header_key) if header_key is not None else None
        if single:
            raw = await read_body(request, rt.max_event, EventTooLarge)
            refuse_nul(raw)
            message = decode(raw, SegmentMessage)
            key, ids = message.writeKey, [message.messageId]
        else:
            raw = await read_body(request, rt.max_batch)
            refuse_nul(raw)
            batch = decode_batch(raw, SegmentBatch, rt.max_event, rt.wants_dedupe_id)
            check_events(batch.events, "batch", len(raw), rt.max_event)
            key, ids = batch.key, batch.ids
        if sender is None:
            sender = await _write_key(rt, key)
        dedupe = batch_id(sender.app, ids) if rt.wants_dedupe_id else ""
        await rt.append(SEGMENT, endpoint, sender, raw, dedupe)
        return CompleteResponse(SUCCESS)

    segment.__name__ = f"segment_{endpoint}"
    return _retrying(segment)


for _endpoint in (*BATCH_ROUTES, *SINGLE_ROUTES):
    api.route(
        "POST",
        f"/v1/{_endpoint}",
        summary="Segment-compatible ingest: "
        + ("a batch of messages" if _endpoint in BATCH_ROUTES else f"one {_endpoint} message")
        + " (write key)",
        tag="analytics",
        auth="client",
        body=SEGMENT_BATCH_BODY if _endpoint in BATCH_ROUTES else SEGMENT_MESSAGE_BODY,
        responses=RESPONSES,
    )(segment_handler(_endpoint))


@api.route(
    "POST",
    "/client/v1/events",
    summary="Native event ingest: a batch of events (deployment key; gzip allowed)",
    tag="analytics",
    auth="client",
    body=NATIVE_BODY,
    responses=RESPONSES,
)
@_retrying
async def native_events(request: web.Request) -> web.StreamResponse:
    rt = request.app[ANALYTICS]
    key = deployment_key_header(request)
    sender = await rt.deployment_keys.get(key) if key else None
    if key and sender is None:
        raise InvalidDeploymentKey("unknown deployment key")
    raw = await read_body(request, rt.max_batch)
    refuse_nul(raw)
    batch = decode_batch(raw, NativeBatch, rt.max_event, rt.wants_dedupe_id)
    if sender is None:
        body_key = batch.key
        sender = await rt.deployment_keys.get(body_key) if isinstance(body_key, str) else None
        if sender is None:
            raise InvalidDeploymentKey(
                "a valid deployment key is required (X-Deployment-Key or deployment_key)"
            )
    check_events(batch.events, "events", len(raw), rt.max_event)
    dedupe = batch_id(sender.app, batch.ids) if rt.wants_dedupe_id else ""
    await rt.append(NATIVE, "events", sender, raw, dedupe)
    return CompleteResponse(b'{"accepted":%d}' % len(batch.events))
