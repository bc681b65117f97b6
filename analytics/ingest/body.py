"""Reading an event body within Segment's limits, without reading more than the limit.

aiohttp decodes ``Content-Encoding: gzip`` (or ``deflate``) as the body is read, in
bounded pieces, so reading at most ``limit + 1`` decoded bytes bounds a gzip bomb by
its decompressed size. A declared ``Content-Length`` above the limit is refused before
anything is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar, cast

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.web_protocol import RequestPayloadError

from mpaas.analytics.errors import BatchTooLarge, EventTooLarge, InvalidEvents, UnsupportedEncoding
from mpaas.errors import BadRequest, PayloadTooLarge

ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})


def allowed_wire_size(limit: int) -> int:
    """The largest compressed body that could still decode to ``limit`` bytes or fewer."""
    return limit + limit // 64 + 1024


def check_encoding(value: str) -> str:
    """The body's content coding, normalised (``identity`` is none); 415 when it is not one
    the ingest reads."""
    encoding = value.strip().lower()
    if encoding not in ENCODINGS:
        raise UnsupportedEncoding(f"Content-Encoding {encoding[:32]!r} is not supported; use gzip or none")
    return "" if encoding == "identity" else encoding


def wire_limit(limit: int, encoding: str) -> int:
    """The largest body on the wire that may decode within ``limit``."""
    return limit if not encoding else allowed_wire_size(limit)


async def read_body(
    request: web.Request, limit: int, too_large: type[PayloadTooLarge] = BatchTooLarge
) -> bytes:
    """The decoded body, at most ``limit`` bytes; ``too_large`` (a 413) beyond that."""
    encoding = check_encoding(request.headers.get("Content-Encoding", ""))
    declared = request.content_length
    if declared is not None and declared > wire_limit(limit, encoding):
        raise too_large(f"the body is {declared} bytes; the limit is {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    try:
        while True:
            chunk = await request.content.read(limit + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise too_large(f"the decoded body is over the limit of {limit} bytes")
    except (ContentEncodingError, RequestPayloadError):
        raise BadRequest(f"the body is not valid {encoding}", code="invalid_encoding") from None
    except ConnectionResetError:  # the client went away mid-body: nothing to answer, nothing to log
        raise BadRequest(
            "the connection closed before the body was complete", code="incomplete_body"
        ) from None
    if not total:
        raise BadRequest("the body is empty; a JSON object was expected", code="invalid_json")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class SegmentBatch(msgspec.Struct):
    """``/v1/batch``: the messages stay raw bytes, validated as JSON but never built as objects.

    An item that is not an object is not refused here: the loader keeps it aside as an
    invalid event (the hot path checks only what costs little: auth, sizes, JSON).
    """

    batch: list[msgspec.Raw]
    writeKey: Any = None


class SegmentMessage(msgspec.Struct):
    """``/v1/track`` and the other single-message routes."""

    writeKey: Any = None
    messageId: Any = None


class NativeBatch(msgspec.Struct):
    events: list[msgspec.Raw]
    deployment_key: Any = None


class _Ids(msgspec.Struct):
    messageId: Any = None
    message_id: Any = None


class _SegmentIds(msgspec.Struct):
    """:class:`SegmentBatch` read with each event's ids in the same pass (events must be objects)."""

    batch: list[_Ids]
    writeKey: Any = None


class _NativeIds(msgspec.Struct):
    """:class:`NativeBatch` read with each event's ids in the same pass (events must be objects)."""

    events: list[_Ids]
    deployment_key: Any = None


T = TypeVar("T")
_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(t) for t in (SegmentBatch, SegmentMessage, NativeBatch)
}
_IDS = msgspec.json.Decoder(_Ids)
#: Per batch shape: its events field, its key field, its decoder, and the one-pass decoder
#: that also reads the ids.
_SHAPES: dict[type[Any], tuple[str, str, msgspec.json.Decoder[Any], msgspec.json.Decoder[Any]]] = {
    SegmentBatch: ("batch", "writeKey", _DECODERS[SegmentBatch], msgspec.json.Decoder(_SegmentIds)),
    NativeBatch: ("events", "deployment_key", _DECODERS[NativeBatch], msgspec.json.Decoder(_NativeIds)),
}


def _refusal(exc: Exception) -> Exception:
    """The 400 for a msgspec decode error (or a body nested past the recursion limit)."""
    if isinstance(exc, msgspec.ValidationError):
        return InvalidEvents(f"the body is not a batch of event objects: {exc}")
    if isinstance(exc, msgspec.DecodeError):
        return BadRequest(f"the body is not valid JSON: {exc}", code="invalid_json")
    return BadRequest("the body is nested too deeply", code="invalid_json")


def decode(raw: bytes, shape: type[T]) -> T:
    """Check that ``raw`` is JSON of the expected shape without building Python objects for
    the events (msgspec validates and skips them; several times faster than a full parse)."""
    try:
        return cast(T, _DECODERS[shape].decode(raw))
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _refusal(exc) from None


class Batch(msgspec.Struct):
    """What a batch route needs of its body: the key it names, its events, their ids (a
    Struct: built in C, five times cheaper than a NamedTuple on this per-request path)."""

    key: Any
    #: Raw JSON per event, except on the one-pass path, taken only when the body is at most
    #: one event's size (so :func:`check_events` never measures them).
    events: Sequence[Any]
    #: Each event's id (:func:`message_ids`), or empty when not asked for.
    ids: list[Any]


def decode_batch(
    raw: bytes, shape: type[SegmentBatch] | type[NativeBatch], max_event: int, want_ids: bool
) -> Batch:
    """:func:`decode`, then :func:`message_ids` when ``want_ids``, with the same answers.

    With ids wanted and a body no larger than one event, one msgspec pass reads the ids
    while it validates (the two-pass way decodes every event a second time: about half
    the work). That pass is stricter (each event must be an object whose ids decode), so
    whatever it refuses goes the two-pass way, which gives today's error or ids.
    """
    field, key_field, plain, with_ids = _SHAPES[shape]
    if want_ids and len(raw) <= max_event:
        try:
            fast = with_ids.decode(raw)
        except (msgspec.DecodeError, RecursionError):
            pass
        else:
            events: list[_Ids] = getattr(fast, field)
            ids = [e.messageId if e.messageId is not None else e.message_id for e in events]
            return Batch(getattr(fast, key_field), events, ids)
    try:  # decode(raw, shape), one call less on the way of every batch
        doc = plain.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _refusal(exc) from None
    raws: list[msgspec.Raw] = getattr(doc, field)
    return Batch(getattr(doc, key_field), raws, message_ids(raws) if want_ids else [])


def check_events(events: Sequence[Any], field: str, body_size: int, max_event: int) -> None:
    """A batch has at least one event, and none larger than ``max_event`` bytes (measured on
    its raw JSON, and only when the body itself is larger than one event may be)."""
    if not events:
        raise InvalidEvents(f"{field!r} must be a non-empty list of event objects")
    if body_size <= max_event:
        return
    for i, event in enumerate(events):
        size = len(memoryview(event))
        if size > max_event:
            raise EventTooLarge(f"{field}[{i}] is {size} bytes; the limit is {max_event} bytes per event")


def message_ids(events: list[msgspec.Raw]) -> list[Any]:
    """Each event's ``messageId`` (Segment) or ``message_id`` (native), or None."""
    out: list[Any] = []
    for event in events:
        try:
            ids = _IDS.decode(event)
        except msgspec.DecodeError:  # not an object: no id (the loader keeps it aside)
            out.append(None)
            continue
        out.append(ids.messageId if ids.messageId is not None else ids.message_id)
    return out
