"""The ingest routes' work without aiohttp: what the lean listener (:mod:`.listener`) runs.

The same checks, in the same order, as the aiohttp handlers of :mod:`.handlers`
(authenticate, bound, check the JSON, spool, answer), on a body the listener has
already read and decoded. Each function returns the answer's body or raises the same
:class:`~mpaas.errors.MpaasError` the aiohttp route would have answered with.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import zlib
from collections.abc import Callable
from typing import Any

from mpaas.analytics.errors import (
    BatchTooLarge,
    EventTooLarge,
    InvalidDeploymentKey,
    InvalidWriteKey,
)
from mpaas.analytics.ingest.auth import KeyCache, Sender, basic_user
from mpaas.analytics.ingest.body import (
    Batch,
    NativeBatch,
    SegmentBatch,
    SegmentMessage,
    check_events,
    decode,
    decode_batch,
)
from mpaas.analytics.runtime import AnalyticsRuntime
from mpaas.analytics.spool.record import NATIVE, SEGMENT
from mpaas.errors import BadRequest, MpaasError, PayloadTooLarge, ValidationError

SUCCESS = b'{"success":true}'
#: Segment's routes: the batch ones (``b`` is the mobile SDKs', ``import`` the old Android
#: SDK's) and one per message type.
BATCH_ROUTES = ("batch", "b", "import")
SINGLE_ROUTES = ("track", "identify", "page", "screen", "group", "alias")
#: Path -> (endpoint name, is a single-message route); the native route is ``events``.
ROUTES: dict[bytes, tuple[str, bool]] = {
    **{f"/v1/{e}".encode(): (e, False) for e in BATCH_ROUTES},
    **{f"/v1/{e}".encode(): (e, True) for e in SINGLE_ROUTES},
    b"/client/v1/events": ("events", False),
}
NATIVE_ENDPOINT = "events"


def limits(rt: AnalyticsRuntime, endpoint: str, single: bool) -> tuple[int, type[PayloadTooLarge]]:
    """The decoded body's limit for a route and the 413 beyond it."""
    return (rt.max_event, EventTooLarge) if single else (rt.max_batch, BatchTooLarge)


def decoded(body: bytes, encoding: str, limit: int, too_large: type[PayloadTooLarge]) -> bytes:
    """The body decoded (gzip or deflate), at most ``limit`` bytes: a bomb stops at ``limit + 1``."""
    if len(body) > limit and not encoding:
        raise too_large(f"the decoded body is over the limit of {limit} bytes")
    if encoding:
        if encoding == "deflate" and body[:1] and (body[0] & 0x0F) != 8:
            wbits = -zlib.MAX_WBITS  # raw deflate, as some clients send it (aiohttp reads both)
        else:
            wbits = zlib.MAX_WBITS | (16 if encoding != "deflate" else 0)
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(body, limit + 1)
        except zlib.error:
            raise BadRequest(f"the body is not valid {encoding}", code="invalid_encoding") from None
        if len(out) > limit:
            raise too_large(f"the decoded body is over the limit of {limit} bytes")
        if not inflater.eof:
            raise BadRequest(f"the body is not valid {encoding}", code="invalid_encoding")
        body = out
    if not body:
        raise BadRequest("the body is empty; a JSON object was expected", code="invalid_json")
    return body


#: A JSON ``\u0000`` escape, not itself escaped (an odd run of backslashes before ``u0000``).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def refuse_nul(raw: bytes) -> None:
    """400 for a body whose strings hold U+0000, as the document promises (PostgreSQL
    refuses it in text); JSON cannot hold a raw NUL. A body with no backslash at all (most
    are: UTF-8 SDKs escape little) is cleared by one memchr, about 60 times cheaper than
    the six-byte search, whose skip table stalls on the many ``0`` of ids and timestamps."""
    if b"\\" in raw and b"\\u0000" in raw and _NUL_ESCAPE.search(raw):
        raise ValidationError("the body holds a NUL character (\\u0000)")


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
        raise _unknown_write_key()
    return sender


def segment_body(rt: AnalyticsRuntime, single: bool, raw: bytes) -> tuple[Any, list[Any]]:
    """The checks of a Segment body: the key it names and its message ids."""
    refuse_nul(raw)
    if single:
        message = decode(raw, SegmentMessage)
        return message.writeKey, [message.messageId]
    batch = decode_batch(raw, SegmentBatch, rt.max_event, rt.wants_dedupe_id)
    check_events(batch.events, "batch", len(raw), rt.max_event)
    return batch.key, batch.ids


def native_body(rt: AnalyticsRuntime, raw: bytes) -> Batch:
    """The checks of a native body that come before its key (``check_events`` comes after)."""
    refuse_nul(raw)
    return decode_batch(raw, NativeBatch, rt.max_event, rt.wants_dedupe_id)


def native_answer(batch: Batch) -> bytes:
    return b'{"accepted":%d}' % len(batch.events)


def no_deployment_key() -> InvalidDeploymentKey:
    return InvalidDeploymentKey("a valid deployment key is required (X-Deployment-Key or deployment_key)")


async def segment(
    rt: AnalyticsRuntime, endpoint: str, single: bool, header_sender: Sender | None, raw: bytes
) -> bytes:
    """``/v1/<endpoint>`` once the body is read (the aiohttp route and the listener)."""
    key, ids = segment_body(rt, single, raw)
    sender = header_sender if header_sender is not None else await _write_key(rt, key)
    dedupe = batch_id(sender.app, ids) if rt.wants_dedupe_id else ""
    await rt.append(SEGMENT, endpoint, sender, raw, dedupe)
    return SUCCESS


async def native(rt: AnalyticsRuntime, header_sender: Sender | None, raw: bytes) -> bytes:
    """``/client/v1/events`` once the body is read (the aiohttp route and the listener)."""
    batch = native_body(rt, raw)
    sender = header_sender
    if sender is None:
        body_key = batch.key
        sender = await rt.deployment_keys.get(body_key) if isinstance(body_key, str) else None
        if sender is None:
            raise no_deployment_key()
    check_events(batch.events, "events", len(raw), rt.max_event)
    dedupe = batch_id(sender.app, batch.ids) if rt.wants_dedupe_id else ""
    await rt.append(NATIVE, NATIVE_ENDPOINT, sender, raw, dedupe)
    return native_answer(batch)


async def header_sender(
    rt: AnalyticsRuntime, endpoint: str, authorization: str | None, deployment_key: str | None
) -> Sender | None:
    """The sender named by a header (Basic auth, or ``X-Deployment-Key``), checked before the
    body counts; None when no header names one. A key that is named and unknown is a 401."""
    if endpoint == NATIVE_ENDPOINT:
        if not deployment_key:
            return None
        sender = await rt.deployment_keys.get(deployment_key)
        if sender is None:
            raise _unknown_deployment_key()
        return sender
    user = basic_user(authorization)
    return await _write_key(rt, user) if user is not None else None


def _sender(cache: KeyCache, key: Any, refuse: Callable[[], MpaasError]) -> Sender | None:
    """The cached sender of ``key``; None when only the database knows (take the async path)."""
    if not isinstance(key, str):
        raise refuse()
    known, sender = cache.cached(key)
    if known and sender is None:
        raise refuse()
    return sender


def _unknown_write_key() -> MpaasError:
    return InvalidWriteKey("unknown or expired write key (HTTP Basic user name, or writeKey in the body)")


def _unknown_deployment_key() -> MpaasError:
    return InvalidDeploymentKey("unknown deployment key")


Submit = Callable[[list[bytes], str], "asyncio.Future[None]"]


def without_waiting(
    rt: AnalyticsRuntime,
    submit: Submit,
    endpoint: str,
    single: bool,
    authorization: str | None,
    deployment_key: str | None,
    body: bytes,
    encoding: str,
    limit: int,
    too_large: type[PayloadTooLarge],
) -> tuple[asyncio.Future[None], bytes] | None:
    """The whole route up to the spool, with no coroutine: the spool's future (done once the
    fsync covered the record) and the answer's body. The same checks in the same order as
    :func:`header_sender` then :func:`segment` or :func:`native`, with the same errors; None
    when a key is not in its cache, and the caller takes that async path instead. ``limit`` and
    ``too_large`` are the route's (:func:`limits`)."""
    sender: Sender | None = None
    if endpoint == NATIVE_ENDPOINT:
        if (
            deployment_key
            and (sender := _sender(rt.deployment_keys, deployment_key, _unknown_deployment_key)) is None
        ):
            return None
        raw = decoded(body, encoding, limit, too_large)
        batch = native_body(rt, raw)
        if sender is None and (sender := _sender(rt.deployment_keys, batch.key, no_deployment_key)) is None:
            return None
        check_events(batch.events, "events", len(raw), rt.max_event)
        source, ids, answer = NATIVE, batch.ids, native_answer(batch)
    else:
        user = basic_user(authorization)
        if user is not None and (sender := _sender(rt.write_keys, user, _unknown_write_key)) is None:
            return None
        raw = decoded(body, encoding, limit, too_large)
        key, ids = segment_body(rt, single, raw)
        if sender is None and (sender := _sender(rt.write_keys, key, _unknown_write_key)) is None:
            return None
        source, answer = SEGMENT, SUCCESS
    dedupe = batch_id(sender.app, ids) if rt.wants_dedupe_id else ""
    return submit(*rt.record(source, endpoint, sender, raw, dedupe)), answer
