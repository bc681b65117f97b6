"""Fuzzing the parsers that read untrusted bytes before any authentication matters.

The native update-check body (the compiled kernel's ``load_object`` and ``native_check``,
and the reference ``native_answer``), the analytics event batch parser (``decode``,
``check_events``, ``message_ids``, called read-only), and the JSON reader of every other
route (``parse_json``). Properties, on arbitrary bytes and on mutated valid bodies:

- nothing escapes but our own errors with a 4xx status (never a 500, never a
  ``RecursionError``, ``ValueError`` or ``KeyError``);
- time is bounded: inputs are a few KB, and each example has a generous deadline that
  only a super-linear blow-up would miss;
- valid input round-trips: what the parser returns is what was sent.

The whole module spends about ten seconds (``max_examples`` per property).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpaas.analytics.ingest.body import (
    NativeBatch,
    SegmentBatch,
    SegmentMessage,
    check_events,
    decode,
    message_ids,
)
from mpaas.errors import MpaasError
from mpaas.packages.releases import check_kernel as kernel
from mpaas.web.api import parse_json

FUZZ = settings(
    max_examples=60,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
MAX_EVENT = 2048


def only_our_4xx(call: Callable[[], Any]) -> Any:
    """The call's result, or None when it refused the input with one of our 4xx errors."""
    try:
        return call()
    except MpaasError as exc:
        assert 400 <= exc.status < 500, (type(exc).__name__, exc.status, exc.message)
        assert exc.code and exc.message
        return None


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


def _mutations(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Valid bodies, cut short, with a byte flipped, spliced with noise, or nested deep."""

    def mutate(draw: st.DrawFn) -> bytes:
        raw = draw(valid)
        how = draw(st.sampled_from(["as is", "cut", "flip", "splice", "deep"]))
        if how == "cut" and raw:
            return raw[: draw(st.integers(0, len(raw) - 1))]
        if how == "flip" and raw:
            i = draw(st.integers(0, len(raw) - 1))
            return raw[:i] + bytes([draw(st.integers(0, 255))]) + raw[i + 1 :]
        if how == "splice":
            i = draw(st.integers(0, len(raw)))
            return raw[:i] + draw(st.binary(max_size=40)) + raw[i:]
        if how == "deep":
            depth = draw(st.integers(100, 5000))
            return raw[:-1] + b',"x":' + b"[" * depth + b"]" * depth + b"}"
        return raw

    return st.composite(mutate)()


# -- the native update check ---------------------------------------------------------------

package_entries = st.fixed_dictionaries(
    {"kind": st.sampled_from(["bundle", "offline", "hotfix", "apk", ""]), "id": st.text(max_size=12)},
    optional={"hash": st.one_of(st.none(), st.text(max_size=70))},
)
check_bodies = st.fixed_dictionaries(
    {"device_id": st.text(max_size=20)},
    optional={
        "os": st.sampled_from(["ios", "android", "x"]) | json_values,
        "app_version": st.sampled_from(["5.2.1", "1", "v2.0.0-beta.1", "x"]) | json_values,
        "os_version": st.text(max_size=12),
        "tags": st.lists(st.text(max_size=8), max_size=4) | json_values,
        "packages": st.lists(package_entries | json_values, max_size=6) | json_values,
        "discover": st.booleans() | json_values,
        "user_id": st.text(max_size=10) | json_values,
    },
)
check_raw = check_bodies.map(lambda body: json.dumps(body, ensure_ascii=False).encode())


def _table() -> Any:
    """A table over two lineages whose plans answer from the request (as the kernel tests do)."""

    def build(kind: str, pid: str, digest: str | None, device: Any) -> Any:
        raw = json.dumps({"kind": kind, "id": pid, "from": digest, "os": device.os}).encode()
        return kernel.NativePlan(kernel.Plan((), (None,)), (raw,), (len(raw),), (None,), (False,), True)

    return kernel.NativeTable(
        b'{"channel":"c","packages":[', 7, build, (("bundle", "app"), ("offline", "home"))
    )


@FUZZ
@given(st.binary(max_size=512) | _mutations(check_raw))
def test_update_check_refuses_any_bytes_with_a_4xx(raw: bytes) -> None:
    table = _table()
    answer = only_our_4xx(lambda: kernel.native_check(table, raw, 1.0))
    if answer is not None:
        body, etag = answer
        assert isinstance(json.loads(body), dict) and etag.startswith('"')


def _as_orjson_reads(raw: bytes) -> Any:
    """``json.loads``, but integers outside 64 bits (signed or unsigned) come back as floats,
    as orjson reads them (found by this test beside a CPU burner: -2**63 - 1)."""

    def number(text: str) -> int | float:
        value = int(text)
        return value if -(2**63) <= value < 2**64 else float(text)

    return json.loads(raw, parse_int=number)


@FUZZ
@given(check_bodies)
def test_update_check_body_round_trips(body: dict[str, Any]) -> None:
    raw = json.dumps(body, ensure_ascii=False).encode()
    assert kernel.load_object(raw) == _as_orjson_reads(raw)
    fast, reference = _table(), _table()
    got = only_our_4xx(lambda: kernel.native_check(fast, raw, 1.0))
    want = only_our_4xx(lambda: kernel.native_answer(reference, json.loads(raw), 1.0))
    assert got == want  # the raw-bytes fast path answers as the reference parser does


@FUZZ
@given(
    st.lists(st.tuples(st.sampled_from(["bundle", "offline", "hotfix"]), st.text(min_size=1, max_size=20)))
)
def test_installed_packages_round_trip(entries: list[tuple[str, str]]) -> None:
    for kind, pid in entries:
        assert kernel.parse_installed({"kind": kind, "id": pid}) == (kind, pid, None)


# -- the analytics event batch ------------------------------------------------------------

events = st.dictionaries(st.text(max_size=8), json_values, max_size=5) | st.fixed_dictionaries(
    {"type": st.just("track"), "event": st.text(max_size=12)},
    optional={"messageId": st.text(max_size=16), "message_id": st.text(max_size=16)},
)
native_batches = st.fixed_dictionaries(
    {"events": st.lists(events, max_size=5)}, optional={"deployment_key": json_values}
)
segment_batches = st.fixed_dictionaries(
    {"batch": st.lists(events, max_size=5)}, optional={"writeKey": json_values}
)
batch_raw = (native_batches | segment_batches).map(lambda b: json.dumps(b, ensure_ascii=False).encode())


def _parse_batch(raw: bytes, shape: type[Any]) -> Any:
    doc = decode(raw, shape)
    if shape is SegmentMessage:
        return doc
    items = doc.events if shape is NativeBatch else doc.batch
    check_events(items, "events", len(raw), MAX_EVENT)
    message_ids(items)
    return items


@FUZZ
@given(
    st.binary(max_size=512) | _mutations(batch_raw),
    st.sampled_from([NativeBatch, SegmentBatch, SegmentMessage]),
)
def test_event_batch_refuses_any_bytes_with_a_4xx(raw: bytes, shape: type[Any]) -> None:
    only_our_4xx(lambda: _parse_batch(raw, shape))


@FUZZ
@given(st.lists(events, min_size=1, max_size=6))
def test_event_batch_round_trips(batch: list[dict[str, Any]]) -> None:
    raw = json.dumps({"events": batch}, ensure_ascii=False).encode()
    items = _parse_batch(raw, NativeBatch)
    assert [msgspec.json.decode(bytes(item)) for item in items] == batch
    ids = [e.get("messageId", e.get("message_id")) for e in batch]
    assert message_ids(items) == ids


# -- every other JSON body -----------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=512) | _mutations(json_values.map(lambda v: json.dumps({"v": v}).encode())))
def test_parse_json_refuses_any_bytes_with_a_4xx(raw: bytes) -> None:
    only_our_4xx(lambda: parse_json(raw))


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


@FUZZ
@given(json_values)
def test_parse_json_round_trips(value: Any) -> None:
    """What JSON holds comes back, except strings holding U+0000, which are refused."""
    raw = json.dumps(value).encode()
    if _holds_nul(value):
        assert only_our_4xx(lambda: parse_json(raw)) is None
    else:
        assert parse_json(raw) == value
