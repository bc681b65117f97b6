"""Normalisation in Python: spool records (raw batches as clients sent them) into typed columns.

The reference for every rule below. The loader normalises in SQL
(:mod:`mpaas.analytics.loader.columnar`) and sends here only the records and events SQL
cannot decide cheaply (masking candidates, catalogued events, invalid or odd ones);
``seq`` orders events by (record ordinal, index) so both paths dedupe alike.

One shape comes out of three inputs: Segment messages (camelCase, ``/v1/batch`` or one
message per ``/v1/<type>``), native batches (snake_case, ``POST /client/v1/events``),
and server-side events (``emit``). Context fields become columns (app version,
platform, OS, device model, package versions); properties and traits stay JSON, masked
and checked against the catalogue. Clock correction is done by the store in SQL from
``ts_raw``, ``sent_raw`` and ``received_at`` (see :mod:`mpaas.analytics.store.duckdb`).

Nothing is dropped here: an event that cannot be normalised (unknown type, a track
without a name, a message that is not an object) goes to the invalid table with the
reason and its raw JSON.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import orjson

from mpaas.analytics.catalog.checker import CatalogSnapshot, check
from mpaas.analytics.loader.rows import EVENT_SCHEMA, INVALID_SCHEMA, Rows
from mpaas.analytics.masking import QUICK, mask_text, mask_tree
from mpaas.analytics.spool.record import SEGMENT, RecordHeader, decode

TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})
BATCH_ENDPOINTS = frozenset({"batch", "b", "import"})
TRAIT_TYPES = frozenset({"identify", "group"})
MAX_RAW = 32 * 1024
#: Field names per protocol: message id, user, anonymous id, previous id, group id, sentAt.
_SEGMENT_KEYS = ("messageId", "userId", "anonymousId", "previousId", "groupId", "sentAt")
_NATIVE_KEYS = ("message_id", "user_id", "anonymous_id", "previous_id", "group_id", "sent_at")
_EMPTY: dict[str, Any] = {}
#: ``seq`` (the order events are deduped in) is the record's ordinal, then the event's index.
SEQ_SHIFT = 20


def _id(value: Any) -> str | None:
    """Segment ids may be strings or integers; anything else is no id."""
    if isinstance(value, str):
        return value[:256] or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else _EMPTY


def _str(value: Any) -> str | None:
    return value[:256] if isinstance(value, str) else None


def _json(value: Any, allowed: frozenset[str], flags: list[str]) -> str:
    raw = orjson.dumps(value)
    if QUICK.search(raw):
        value, kinds = mask_tree(value, allowed)
        if kinds:
            flags.extend(f"masked:{k}" for k in sorted(kinds))
            raw = orjson.dumps(value)
    return raw.decode()


@dataclass(frozen=True, slots=True)
class _Prepared:
    header: RecordHeader
    items: list[Any]
    keys: tuple[str, ...]
    default_type: str | None
    base: dict[str, Any]
    defaults: tuple[str | None, str | None, Any]


class Normaliser:
    """Accumulates the rows of one load batch."""

    def __init__(self, catalog: CatalogSnapshot) -> None:
        self.catalog = catalog
        self.events = Rows(EVENT_SCHEMA)
        self.invalid = Rows(INVALID_SCHEMA)
        self._next = 0

    def add(self, record_id: str, body: bytes, ordinal: int | None = None) -> None:
        """Normalise every event of one spool record (``ordinal`` orders it in the batch)."""
        prepared = self._prepare(record_id, body)
        if prepared is not None:
            self._events(prepared, record_id, self._ordinal(ordinal), None)

    def add_events(self, record_id: str, body: bytes, ordinal: int, indices: Collection[int]) -> None:
        """Normalise only the events at ``indices`` of one record (the SQL path did the rest)."""
        prepared = self._prepare(record_id, body)
        if prepared is not None:
            self._events(prepared, record_id, ordinal, indices)

    def _ordinal(self, ordinal: int | None) -> int:
        if ordinal is None:
            ordinal = self._next
        self._next = max(self._next, ordinal + 1)
        return ordinal

    def _prepare(self, record_id: str, body: bytes) -> _Prepared | None:
        try:
            header, raw = decode(body)
        except (ValueError, KeyError, TypeError) as exc:
            self._invalid("", 0, record_id, f"unreadable spool record: {exc}", body)
            return None
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            self._invalid(header.app, header.received_ms, record_id, "body is not a JSON object", raw)
            return None
        if header.source == SEGMENT:
            keys = _SEGMENT_KEYS
            if header.endpoint in BATCH_ENDPOINTS:
                items, default_type, base = doc.get("batch"), None, _obj(doc.get("context"))
            else:
                items, default_type, base = [doc], header.endpoint, _EMPTY
        else:
            keys = _NATIVE_KEYS
            items, default_type, base = doc.get("events"), "track", _obj(doc.get("context"))
        if not isinstance(items, list):
            self._invalid(header.app, header.received_ms, record_id, "no list of events", raw)
            return None
        defaults = (_id(doc.get(keys[1])), _id(doc.get(keys[2])), doc.get(keys[5]))
        return _Prepared(header, items, keys, default_type, base, defaults)

    def _events(self, p: _Prepared, record_id: str, ordinal: int, indices: Collection[int] | None) -> None:
        h = p.header
        for i, event in enumerate(p.items):
            if indices is not None and i not in indices:
                continue
            if not isinstance(event, dict):
                self._invalid(h.app, h.received_ms, record_id, "event is not an object", event)
                continue
            try:
                seq = (ordinal << SEQ_SHIFT) | i
                self._event(h, record_id, i, event, p.keys, p.default_type, p.base, p.defaults, seq)
            except Exception as exc:  # a poison event must not stall the loader: keep it aside
                reason = f"not normalised: {exc!r}"[:200]
                self._invalid(h.app, h.received_ms, record_id, reason, event)

    def _event(
        self,
        h: RecordHeader,
        record_id: str,
        index: int,
        e: dict[str, Any],
        keys: tuple[str, ...],
        default_type: str | None,
        base: dict[str, Any],
        defaults: tuple[str | None, str | None, Any],
        seq: int,
    ) -> None:
        kind = e.get("type") or default_type
        if kind not in TYPES:
            self._invalid(h.app, h.received_ms, record_id, f"unknown event type {str(kind)[:32]!r}", e)
            return
        name = e.get("event") if kind == "track" else e.get("name") if kind in ("page", "screen") else None
        if kind == "track" and (not isinstance(name, str) or not name):
            self._invalid(h.app, h.received_ms, record_id, "a track event needs an event name", e)
            return
        name = _str(name)
        flags: list[str] = []
        user_id = _id(e.get(keys[1])) or defaults[0]
        anonymous_id = _id(e.get(keys[2])) or defaults[1]
        if user_id is None and anonymous_id is None and h.source != "server":
            flags.append("no_identity")
        ctx = e.get("context")
        ctx = {**base, **ctx} if base and isinstance(ctx, dict) else ctx if isinstance(ctx, dict) else base
        props = e.get("traits" if kind in TRAIT_TYPES else "properties")
        if props is None and kind in TRAIT_TYPES:
            props = ctx.get("traits")
        if props is None:
            props = {}
        elif not isinstance(props, dict):
            flags.append("bad_properties")
            props = {}
        allowed: frozenset[str] = frozenset()
        if kind == "track":
            definition = self.catalog.lookup(h.app, name or "")
            if definition is None:
                flags.append("undeclared")
            else:
                flags.extend(check(definition, props))
                allowed = definition.allowed
        app_ctx, os_ctx, device, library = (
            _obj(ctx.get("app")),
            _obj(ctx.get("os")),
            _obj(ctx.get("device")),
            _obj(ctx.get("library")),
        )
        os_name = _str(os_ctx.get("name"))
        platform = _str(device.get("type")) or (os_name.lower() if os_name else None)
        lib = _str(library.get("name"))
        if lib and isinstance(library.get("version"), str):
            lib = f"{lib}/{library['version'][:64]}"
        packages = ctx.get("packages")
        ts, sent = e.get("timestamp"), e.get(keys[5]) or defaults[2]
        self.events.rows.append(
            (
                seq,
                h.app,
                h.source,
                h.channel,
                kind,
                name,
                _id(e.get(keys[0])) or f"mpaas-{h.rid}-{index}",
                user_id,
                anonymous_id,
                _id(e.get(keys[3])),
                _id(e.get(keys[4])),
                ts if isinstance(ts, str) or ts is None else str(ts),
                sent if isinstance(sent, str) or sent is None else str(sent),
                h.received_ms,
                _str(app_ctx.get("version")),
                platform,
                os_name,
                _str(os_ctx.get("version")),
                _str(device.get("model")),
                _str(device.get("id")),
                lib,
                orjson.dumps(packages).decode() if isinstance(packages, list) else None,
                _json(props, allowed, flags),
                _json(ctx, frozenset(), flags),
                flags,
            )
        )

    def _invalid(self, app: str, received_ms: int, record_id: str, reason: str, raw: Any) -> None:
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else orjson.dumps(raw).decode()
        text, _kinds = mask_text(text[:MAX_RAW])  # invalid or not, personal numbers never land
        self.invalid.rows.append((app, received_ms, record_id, reason, text))
