"""The ingest routes: native ``POST /client/v1/events`` and Segment's ``/v1/*``.

Each does only what decides whether the request can ever succeed, then spools the raw
body: authenticate (a bad key is refused before the body is read when the key is in a
header), bound the body, check that it parses into event objects within the limits.
Answers follow the 4xx rule: 400/401/413/415 only for input that can never succeed;
a spool that cannot write answers 503, and one with too much waiting answers 429, both
with ``Retry-After``, so the SDKs keep the batch and retry. The checks themselves are in
:mod:`.routes`, shared with the lean listener; here aiohttp reads the body.
"""

from __future__ import annotations

from aiohttp import web
from multidict import istr

from mpaas.analytics.errors import RetryLater
from mpaas.analytics.ingest import routes
from mpaas.analytics.ingest.body import read_body
from mpaas.analytics.ingest.routes import BATCH_ROUTES, NATIVE_ENDPOINT, SINGLE_ROUTES
from mpaas.analytics.runtime import ANALYTICS
from mpaas.web.api import Api, Handler, deployment_key_header
from mpaas.web.complete_response import CompleteResponse
from mpaas.web.edge import error_response

api = Api()
AUTHORIZATION = istr("Authorization")

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


def segment_handler(endpoint: str) -> Handler:
    single = endpoint in SINGLE_ROUTES

    async def segment(request: web.Request) -> web.StreamResponse:
        rt = request.app[ANALYTICS]
        sender = await routes.header_sender(rt, endpoint, request.headers.get(AUTHORIZATION), None)
        raw = await read_body(request, *routes.limits(rt, endpoint, single))
        return CompleteResponse(await routes.segment(rt, endpoint, single, sender, raw))

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
    sender = await routes.header_sender(rt, NATIVE_ENDPOINT, None, deployment_key_header(request))
    raw = await read_body(request, rt.max_batch)
    return CompleteResponse(await routes.native(rt, sender, raw))
