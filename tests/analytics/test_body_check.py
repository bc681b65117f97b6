"""The batch check (``decode_batch`` then ``check_events``) answers exactly as the two-pass
msgspec check it replaced: the same 4xx (status, code and message) for the same bodies, and
for the bodies it accepts the same key, number of events and message ids.

The reference below is the old code, kept here verbatim in behaviour: a msgspec decode of
the batch with each event as raw JSON, the size checks, then each event decoded again for
its ids. The bodies are generated batches, mutated (cut, flipped, spliced), and the edge
cases where JSON parsers part ways: NaN and Infinity, numbers out of range (1e400, huge
integers), invalid UTF-8, lone surrogates in ``\\u`` escapes, duplicate keys, a BOM, deep
nesting, events that are not objects.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mpaas.analytics.errors import EventTooLarge, InvalidEvents
from mpaas.analytics.ingest.body import NativeBatch, SegmentBatch, check_events, decode_batch
from mpaas.errors import BadRequest, MpaasError

SHAPES = {SegmentBatch: ("batch", "writeKey"), NativeBatch: ("events", "deployment_key")}
BIG = 1 << 20  # larger than any body here: the one-pass path is allowed
CHECK = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


# -- the reference: the check as it was before the one-pass path ---------------------------


class _RefSegment(msgspec.Struct):
    batch: list[msgspec.Raw]
    writeKey: Any = None


class _RefNative(msgspec.Struct):
    events: list[msgspec.Raw]
    deployment_key: Any = None


class _RefIds(msgspec.Struct):
    messageId: Any = None
    message_id: Any = None


_REF: dict[type[Any], msgspec.json.Decoder[Any]] = {
    SegmentBatch: msgspec.json.Decoder(_RefSegment),
    NativeBatch: msgspec.json.Decoder(_RefNative),
}
_REF_IDS = msgspec.json.Decoder(_RefIds)


def reference(raw: bytes, shape: type[Any], max_event: int, want_ids: bool) -> tuple[Any, int, list[Any]]:
    field, key_field = SHAPES[shape]
    try:
        doc = _REF[shape].decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidEvents(f"the body is not a batch of event objects: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise BadRequest("the body is nested too deeply", code="invalid_json") from None
    events: list[msgspec.Raw] = getattr(doc, field)
    if not events:
        raise InvalidEvents(f"{field!r} must be a non-empty list of event objects")
    if len(raw) > max_event:
        for i, event in enumerate(events):
            size = len(memoryview(event))
            if size > max_event:
                raise EventTooLarge(f"{field}[{i}] is {size} bytes; the limit is {max_event} bytes per event")
    ids: list[Any] = []
    for event in events if want_ids else []:
        try:
            one = _REF_IDS.decode(event)
        except msgspec.DecodeError:
            ids.append(None)
            continue
        ids.append(one.messageId if one.messageId is not None else one.message_id)
    return getattr(doc, key_field), len(events), ids


def checked(raw: bytes, shape: type[Any], max_event: int, want_ids: bool) -> tuple[Any, int, list[Any]]:
    """The check as the handlers run it."""
    batch = decode_batch(raw, shape, max_event, want_ids)
    check_events(batch.events, SHAPES[shape][0], len(raw), max_event)
    return batch.key, len(batch.events), batch.ids


def outcome(call: Any, *args: Any) -> tuple[Any, ...]:
    """What a client would see: the answer, or the error's class, status, code and message."""
    try:
        key, count, ids = call(*args)
    except MpaasError as exc:
        return ("refused", type(exc).__name__, exc.status, exc.code, exc.message)
    except Exception as exc:  # anything else (a 500) must match too
        return ("raised", type(exc).__name__)
    # repr keeps 1 and 1.0 and True apart (batch_id hashes str() of each id)
    return ("ok", repr(key), count, repr(ids))


def assert_same(raw: bytes, shape: type[Any], max_event: int = BIG, want_ids: bool = True) -> tuple[Any, ...]:
    new = outcome(checked, raw, shape, max_event, want_ids)
    assert new == outcome(reference, raw, shape, max_event, want_ids), raw[:300]
    return new


# -- generated bodies -----------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
events = (
    st.fixed_dictionaries(
        {"type": st.just("track"), "event": st.text(max_size=12)},
        optional={
            "messageId": values,
            "message_id": values,
            "properties": st.dictionaries(st.text(max_size=8), values, max_size=3),
        },
    )
    | st.dictionaries(st.text(max_size=8), values, max_size=3)
    | scalars
)


def documents(field: str, key_field: str) -> st.SearchStrategy[dict[str, Any]]:
    """Bodies as a JSON text: mostly a list of events under ``field``, a key, other fields."""
    return st.fixed_dictionaries(
        {field: st.lists(events, max_size=5) | st.lists(events, min_size=1, max_size=3) | values},
        optional={key_field: values, "sentAt": st.just("2026-12-03T10:00:05.000Z"), "other": values},
    ) | st.dictionaries(st.sampled_from([field, key_field, "batch", "events", "x"]), values, max_size=3)


#: Pieces spliced into a body where JSON parsers part ways.
ODD = [
    b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1e-400", b"1.8e308",
    b"123456789012345678901234567890", b"-123456789012345678901234567890", b"18446744073709551616",
    b'"\xff"', b'"\xed\xa0\x80"', b'"\xc0\xaf"', b'"\\ud800"', b'"\\udc00"', b'"\\ud800\\u0041"',
    b'"\\ud83d\\ude00"', b'"\\u0000"', b'"\x01"', b'"\x7f"', b"\xef\xbb\xbf", b"01", b"1.", b"-",
    b"tru", b"[]", b"{}", b"[" * 40 + b"]" * 40, b"[" * 3000 + b"]" * 3000, b'{"messageId":1e400}',
    b'{"messageId":"\xff"}', b'{"messageId":' + b"[" * 3000 + b"]" * 3000 + b"}",
]  # fmt: skip


@st.composite
def bodies(draw: st.DrawFn, shape: type[Any]) -> bytes:
    """A generated body for ``shape``, as an SDK would send it or mutated."""
    field, key_field = SHAPES[shape]
    doc = draw(documents(field, key_field))
    raw = json.dumps(
        doc,
        ensure_ascii=draw(st.booleans()),
        separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])),
    ).encode()
    how = draw(st.sampled_from(["as is", "duplicate", "duplicate", "odd", "odd", "cut", "flip", "splice"]))
    if how == "duplicate" and raw.startswith(b"{"):  # the same key again, first or last
        key = draw(st.sampled_from([field.encode(), field.encode(), key_field.encode()]))
        value = draw(st.sampled_from([b"[]", b"[{}]", b"1", b'"k"', b'[{"messageId":"x"}]', b"null"]))
        pair = b'"' + key + b'":' + value
        raw = b"{" + pair + b"," + raw[1:] if raw != b"{}" else b"{" + pair + b"}"
        if draw(st.booleans()):
            raw = raw[:-1] + b"," + pair + b"}"
    elif how == "odd":  # an odd piece instead of a value, or anywhere
        piece = draw(st.sampled_from(ODD))
        spots = [i + 1 for i in range(len(raw)) if raw[i : i + 1] in (b"[", b":", b",")]
        at = draw(st.sampled_from(spots)) if spots else 0
        end = at
        if draw(st.booleans()):  # replace the value that starts there, as far as a simple scan sees it
            while end < len(raw) and raw[end : end + 1] not in (b",", b"]", b"}"):
                end += 1
        raw = raw[:at] + piece + raw[end:]
    elif how == "cut" and raw:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif how == "flip" and raw:
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([draw(st.integers(0, 255))]) + raw[i + 1 :]
    elif how == "splice":
        i = draw(st.integers(0, len(raw)))
        raw = raw[:i] + draw(st.binary(max_size=6)) + raw[i:]
    return raw


@CHECK
@given(st.data(), st.sampled_from([BIG, BIG, 64, 16]), st.booleans())
@pytest.mark.parametrize("shape", [SegmentBatch, NativeBatch])
def test_the_check_answers_as_the_two_pass_reference(
    shape: type[Any], data: st.DataObject, max_event: int, want_ids: bool
) -> None:
    assert_same(data.draw(bodies(shape)), shape, max_event, want_ids)


@CHECK
@given(st.binary(max_size=64), st.sampled_from([SegmentBatch, NativeBatch]), st.booleans())
def test_any_bytes_get_the_reference_answer(raw: bytes, shape: type[Any], want_ids: bool) -> None:
    assert_same(raw, shape, BIG, want_ids)


# -- the cases where parsers differ, one by one ---------------------------------------------


@pytest.mark.parametrize("piece", ODD)
@pytest.mark.parametrize("where", ["message id", "other field", "event", "key"])
def test_odd_values_anywhere_get_the_reference_answer(piece: bytes, where: str) -> None:
    for shape, (field, key_field) in SHAPES.items():
        if where == "message id":
            raw = b'{"%s":[{"messageId":"a"},{"messageId":%s}]}' % (field.encode(), piece)
        elif where == "other field":
            raw = b'{"%s":[{"messageId":"a","p":%s}]}' % (field.encode(), piece)
        elif where == "event":
            raw = b'{"%s":[{"messageId":"a"},%s]}' % (field.encode(), piece)
        else:
            raw = b'{"%s":[{"messageId":"a"}],"%s":%s}' % (field.encode(), key_field.encode(), piece)
        assert_same(raw, shape)


def test_ids_of_events_that_are_not_objects_or_whose_id_does_not_decode_are_none() -> None:
    raw = b'{"batch":[{"messageId":"a"},1,{"message_id":7},{"messageId":1e400},{"messageId":"\xff"}]}'
    assert assert_same(raw, SegmentBatch) == ("ok", "None", 5, repr(["a", None, 7, None, None]))


@pytest.mark.parametrize(
    ("raw", "answer"),
    [
        (b'{"batch":[{"messageId":"a"}],"batch":[{"messageId":"b"}]}', ("ok", "None", 1, "['b']")),
        (b'{"batch":1,"batch":[{"messageId":"b"}]}', ("refused", "InvalidEvents", 400, "invalid_events")),
        (b'{"batch":[{"messageId":"a","messageId":"b"}]}', ("ok", "None", 1, "['b']")),
        (b'{"batch":[{}],"writeKey":"a","writeKey":"b"}', ("ok", "'b'", 1, "[None]")),
        (b'\xef\xbb\xbf{"batch":[{}]}', ("refused", "BadRequest", 400, "invalid_json")),
        (b'{"batch":[]}', ("refused", "InvalidEvents", 400, "invalid_events")),
        (b'{"batch":[{"messageId":NaN}]}', ("refused", "BadRequest", 400, "invalid_json")),
        (b'{"batch":[{"messageId":"\\ud800"}]}', ("refused", "BadRequest", 400, "invalid_json")),
        (b'{"batch":[{}],"writeKey":1e400}', ("refused", "InvalidEvents", 400, "invalid_events")),
    ],
)
def test_duplicates_and_edges_answer_as_before(raw: bytes, answer: tuple[Any, ...]) -> None:
    assert assert_same(raw, SegmentBatch)[: len(answer)] == answer
    without_ids = (*answer[:3], "[]") if answer[0] == "ok" else answer
    assert assert_same(raw, SegmentBatch, want_ids=False)[: len(answer)] == without_ids


@example(depth=50)
@given(st.integers(1, 1500))
@settings(max_examples=30, deadline=None, database=None)
def test_deep_nesting_gets_the_reference_answer(depth: int) -> None:
    for value in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
        assert_same(b'{"batch":[{"messageId":%s}]}' % value, SegmentBatch)
        assert_same(b'{"batch":[{"x":%s}]}' % value, SegmentBatch)


def test_a_body_over_one_event_size_is_measured_per_event() -> None:
    event = b'{"messageId":"m","pad":"' + b"x" * 100 + b'"}'
    raw = b'{"events":[' + b",".join([event] * 3) + b"]}"
    assert assert_same(raw, NativeBatch, max_event=len(event)) == ("ok", "None", 3, "['m', 'm', 'm']")
    refused = assert_same(raw, NativeBatch, max_event=len(event) - 1)
    assert refused[:4] == ("refused", "EventTooLarge", 413, "event_too_large")
