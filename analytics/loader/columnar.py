"""Columnar normalisation: a batch of spool records into event rows with DuckDB SQL over Arrow.

Python only splits each record into its header and raw JSON (one small parse per
record, not per event) and builds an Arrow table of them. DuckDB then parses every
raw batch once (``from_json`` into a fixed structure whose leaves stay JSON text),
unnests the events and computes the typed columns, the catalogue's ``undeclared``
flag and a cheap regular-expression pre-filter for personal numbers.

An event leaves the SQL path for :class:`~mpaas.analytics.loader.normalise.Normaliser`
(the Python path, the reference for every rule) when SQL cannot decide it cheaply:
its properties or context hold a digit run that might be a card, ID or phone number
(Luhn and check digits are computed in Python on these few); its event name has a
catalogue definition (JSON Schema checks in Python); it is invalid (the reason is
worded in Python); or its shape is unusual (a batch context and an event context to
merge, traits only in the context, a non-string timestamp). A record whose body is
not a JSON object with a list of events goes to the Python path whole.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from itertools import accumulate
from typing import Any

import duckdb
import pyarrow as pa

from mpaas.analytics.catalog.checker import CatalogSnapshot
from mpaas.analytics.loader.normalise import BATCH_ENDPOINTS, SEQ_SHIFT, TYPES, Normaliser
from mpaas.analytics.loader.rows import EVENT_SCHEMA, INVALID_SCHEMA
from mpaas.analytics.spool.record import decode

_SEGMENT_KEYS = ("messageId", "userId", "anonymousId", "previousId", "groupId", "sentAt")
_NATIVE_KEYS = ("message_id", "user_id", "anonymous_id", "previous_id", "group_id", "sent_at")
_COMMON_KEYS = ("type", "event", "name", "timestamp", "properties", "traits", "context")


def _struct(keys: tuple[str, ...]) -> str:
    return "{" + ",".join(f'"{k}":"JSON"' for k in keys) + "}"


_SEGMENT_EVENT = _struct(_COMMON_KEYS + _SEGMENT_KEYS)
_NATIVE_EVENT = _struct(_COMMON_KEYS + _NATIVE_KEYS)
_TOP = ("context", "userId", "anonymousId", "sentAt")
_SEGMENT_DOC = "{" + f'"batch":[{_SEGMENT_EVENT}],' + _struct(_TOP)[1:]
_NATIVE_DOC = "{" + f'"events":[{_NATIVE_EVENT}],' + _struct(("context", *_NATIVE_KEYS[1:3], "sent_at"))[1:]
_CONTEXT = (
    '{"app":{"version":"JSON"},"os":{"name":"JSON","version":"JSON"},'
    '"device":{"type":"JSON","model":"JSON","id":"JSON"},'
    '"library":{"name":"JSON","version":"JSON"},"packages":"JSON"}'
)
#: A digit run that might be a personal number (at least 11 digits, maybe grouped), or a
#: full-width digit: the same test as :data:`mpaas.analytics.masking.QUICK`.
_CANDIDATE = "[0-9]([ -]?[0-9]){10}|[０-９]"
_TYPE_JSON = ", ".join(f"'\"{t}\"'" for t in sorted(TYPES))
_BATCH = ", ".join(f"'{e}'" for e in sorted(BATCH_ENDPOINTS))

MACROS = r"""
CREATE OR REPLACE TEMP MACRO unq(x) AS
    CASE WHEN contains(x::VARCHAR, '\') THEN x::VARCHAR->>'$' ELSE (x::VARCHAR)[2:-2] END;
CREATE OR REPLACE TEMP MACRO jstr(x) AS CASE WHEN starts_with(x::VARCHAR, '"') THEN left(unq(x), 256) END;
CREATE OR REPLACE TEMP MACRO jid(x) AS CASE
    WHEN starts_with(x::VARCHAR, '"') THEN nullif(left(unq(x), 256), '')
    WHEN regexp_full_match(x::VARCHAR, '-?(0|[1-9][0-9]*)') THEN x::VARCHAR END;
CREATE OR REPLACE TEMP MACRO jobj(x) AS starts_with(x::VARCHAR, '{');
CREATE OR REPLACE TEMP MACRO strnull(x) AS x IS NULL OR starts_with(x::VARCHAR, '"');
"""


def _flat(keys: tuple[str, ...]) -> str:
    """The event's JSON leaves as VARCHAR columns with protocol-neutral names."""
    mid, user, anon, prev, group, sent = (f"e.{k}::VARCHAR" for k in keys)
    common = ", ".join(f"e.{k}::VARCHAR AS {k}_j" for k in _COMMON_KEYS)
    ids = f"{mid} AS mid_j, {user} AS user_j, {anon} AS anon_j, {prev} AS prev_j, {group} AS group_j"
    return f"{common}, {ids}, {sent} AS esent_j"


_RECORD = "ord, app, source, channel, rid, received_ms"
#: A single message must be an object (a batch that is not has no ``batch`` list: NULL).
_OBJECT_BODY = "starts_with(ltrim(raw[:64]), '{')"

#: One row per event of every record SQL can split, from the three shapes of body.
#: ``unnest`` of a NULL list gives no rows: filtering on ``d.batch IS NOT NULL`` as well made
#: DuckDB parse every record twice (the filter and the projection each called ``from_json``).
#: ``{try}`` is ``try`` (a record that is not JSON gives NULL) or nothing (see :data:`ROWS_FAST`).
EVENTS = f"""
SELECT {_RECORD}, NULL::VARCHAR AS default_type, base, du, da, ds, idx, {_flat(_SEGMENT_KEYS)}
FROM (
    SELECT {_RECORD}, d.context::VARCHAR AS base, d.userId::VARCHAR AS du, d.anonymousId::VARCHAR AS da,
        d.sentAt::VARCHAR AS ds, unnest(d.batch) AS e, generate_subscripts(d.batch, 1) - 1 AS idx
    FROM (SELECT *, {{try}}(from_json(raw, '{_SEGMENT_DOC}')) AS d FROM raw_in
          WHERE source = 'segment' AND endpoint IN ({_BATCH}))
)
UNION ALL
SELECT {_RECORD}, endpoint, NULL, e.userId::VARCHAR, e.anonymousId::VARCHAR, e.sentAt::VARCHAR, 0,
    {_flat(_SEGMENT_KEYS)}
FROM (SELECT *, {{try}}(from_json(raw, '{_SEGMENT_EVENT}')) AS e FROM raw_in
      WHERE source = 'segment' AND endpoint NOT IN ({_BATCH}) AND {_OBJECT_BODY})
WHERE e IS NOT NULL
UNION ALL
SELECT {_RECORD}, 'track', base, du, da, ds, idx, {_flat(_NATIVE_KEYS)}
FROM (
    SELECT {_RECORD}, d.context::VARCHAR AS base, d.user_id::VARCHAR AS du,
        d.anonymous_id::VARCHAR AS da, d.sent_at::VARCHAR AS ds,
        unnest(d.events) AS e, generate_subscripts(d.events, 1) - 1 AS idx
    FROM (SELECT *, {{try}}(from_json(raw, '{_NATIVE_DOC}')) AS d FROM raw_in
          WHERE source <> 'segment')
)
"""

#: The decisions (kind, context, properties, ``slow``) for each event; ``slow`` here leaves
#: out the context's personal numbers, which :data:`ROWS` looks for once per distinct context.
DECIDED = f"""
WITH k AS (
    SELECT *, CASE WHEN coalesce(type_j, to_json(default_type)::VARCHAR) IN ({_TYPE_JSON})
                   THEN unq(coalesce(type_j, to_json(default_type)::VARCHAR)) END AS kind,
        CASE WHEN esent_j IS NOT NULL AND esent_j <> '""' THEN esent_j ELSE ds END AS sent_j,
        CASE WHEN jobj(base) AND base <> '{{}}' THEN base ELSE '{{}}' END AS base_j
    FROM ({EVENTS})
), c AS (
    SELECT *, CASE WHEN NOT jobj(context_j) THEN base_j WHEN base_j = '{{}}' THEN context_j END AS ctx,
        CASE WHEN kind IN ('identify', 'group') THEN traits_j ELSE properties_j END AS p_j,
        coalesce(jid(user_j), jid(du)) AS user_id, coalesce(jid(anon_j), jid(da)) AS anonymous_id
    FROM k
)
SELECT *, coalesce(  -- undecided (NULL) goes to Python too: no event is lost between paths
    kind IS NULL OR ctx IS NULL
    OR (kind = 'track' AND (NOT starts_with(event_j, '"') OR event_j = '""' OR event_j IS NULL))
    OR NOT strnull(timestamp_j) OR NOT strnull(sent_j)
    OR (kind IN ('identify', 'group') AND p_j IS NULL AND contains(ctx, '"traits"'))
    OR regexp_matches(coalesce(p_j, ''), '{_CANDIDATE}'),
    true) AS slow
FROM c
"""

#: The columns that come from the event's context alone (``c``: the context parsed).
_CONTEXT_COLUMNS = """
    jstr(c.app.version) AS app_version,
    coalesce(nullif(jstr(c.device.type), ''), lower(nullif(jstr(c.os.name), ''))) AS platform,
    jstr(c.os.name) AS os, jstr(c.os.version) AS os_version,
    jstr(c.device.model) AS device_model, jstr(c.device.id) AS device_id,
    CASE WHEN nullif(jstr(c.library.name), '') IS NOT NULL AND starts_with(c.library.version::VARCHAR, '"')
         THEN jstr(c.library.name) || '/' || left(unq(c.library.version), 64)
         ELSE jstr(c.library.name) END AS library,
    CASE WHEN starts_with(c.packages::VARCHAR, '[') THEN c.packages::VARCHAR END AS packages"""

#: The rows of the SQL path, in the loader's schema (see :mod:`mpaas.analytics.loader.rows`).
#: A context repeats across events (a device sends many), so the context's columns and its
#: personal-number pre-filter are computed once per distinct context (``x``) and joined back:
#: per event they were 30% of the statement (the regular expression alone 0.65 us an event).
#: ``r`` is materialised once: inlined twice, every batch would be parsed twice.
ROWS = f"""
WITH r AS MATERIALIZED ({DECIDED}),
x AS (
    SELECT ctx, regexp_matches(ctx, '{_CANDIDATE}') AS ctx_slow, {_CONTEXT_COLUMNS}
    FROM (SELECT ctx, from_json(ctx, '{_CONTEXT}') AS c FROM (SELECT DISTINCT ctx FROM r WHERE NOT slow))
)
SELECT ord, idx, coalesce(slow OR ctx_slow, true) AS slow, (ord << {SEQ_SHIFT}) | idx AS seq,
    app, source, channel, kind AS type,
    CASE WHEN kind = 'track' OR kind IN ('page', 'screen') THEN
        jstr(CASE WHEN kind = 'track' THEN event_j ELSE name_j END) END AS event,
    coalesce(jid(mid_j), 'mpaas-' || rid || '-' || idx) AS message_id,
    user_id, anonymous_id,
    jid(prev_j) AS previous_id, jid(group_j) AS group_id,
    CASE WHEN timestamp_j IS NOT NULL THEN unq(timestamp_j) END AS ts_raw,
    CASE WHEN sent_j IS NOT NULL THEN unq(sent_j) END AS sent_raw,
    epoch_ms(received_ms)::TIMESTAMPTZ AS received_at,
    app_version, platform, os, os_version, device_model, device_id, library, packages,
    CASE WHEN jobj(p_j) THEN p_j ELSE '{{}}' END AS properties,
    r.ctx AS context,
    list_filter([
        CASE WHEN user_id IS NULL AND anonymous_id IS NULL AND source <> 'server' THEN 'no_identity' END,
        CASE WHEN p_j IS NOT NULL AND NOT jobj(p_j) THEN 'bad_properties' END,
        CASE WHEN kind = 'track' THEN 'undeclared' END
    ], lambda f: f IS NOT NULL) AS flags
FROM r LEFT JOIN x ON x.ctx = r.ctx
"""

#: ``try`` makes ``from_json`` about 40% dearer: batches run without it first, and again with
#: it only when DuckDB fails on one (some record is not JSON). Same rows either way.
ROWS_FAST = ROWS.replace("{try}", "")
ROWS_SAFE = ROWS.replace("{try}", "try")
#: Records per Arrow batch of ``raw_in``: DuckDB scans an Arrow table one batch per thread, so
#: one batch of all records would keep the normalisation on one core.
CHUNK_RECORDS = 128

_RAW_SCHEMA = pa.schema(
    [
        ("ord", pa.int64()),
        ("app", pa.string()),
        ("source", pa.string()),
        ("endpoint", pa.string()),
        ("channel", pa.string()),
        ("received_ms", pa.int64()),
        ("rid", pa.string()),
        ("raw", pa.large_string()),
    ]
)


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


class ColumnarNormaliser:
    """Normalises load batches in a private in-memory DuckDB; one per loader, one thread at a time."""

    def __init__(self) -> None:
        self._con = duckdb.connect(":memory:")
        self._con.execute("SET TimeZone = 'UTC'; SET enable_progress_bar = false")
        self._con.execute(MACROS)
        self._buffer = bytearray()

    def close(self) -> None:
        self._con.close()

    def normalise(
        self, catalog: CatalogSnapshot, records: Sequence[tuple[str, bytes]]
    ) -> tuple[pa.Table, pa.Table]:
        """(events, invalid) Arrow tables in the loader's schemas for a batch of spool records."""
        python = Normaliser(catalog)
        raw_in = self._raw_table(python, records)
        con = self._con
        con.register("raw_in", raw_in)
        try:
            fast, slow, split = self._split(catalog, self._sql(catalog, con))
        finally:
            con.unregister("raw_in")
        for ordinal in raw_in.column("ord").to_pylist():
            if ordinal not in split:  # not an object, not JSON, no list of events, or no events
                python.add(records[ordinal][0], records[ordinal][1], ordinal)
        for ordinal, indices in slow.items():
            python.add_events(records[ordinal][0], records[ordinal][1], ordinal, indices)
        events = pa.concat_tables([fast, python.events.table()]) if python.events else fast
        return events, python.invalid.table() if python.invalid else INVALID_SCHEMA.empty_table()

    def _raw_table(self, python: Normaliser, records: Sequence[tuple[str, bytes]]) -> pa.Table:
        """Header fields and raw JSON of each record; unreadable records go to the Python path.

        Only the header line is copied per record; the raw batches are joined into one Arrow
        buffer (``pa.array`` over a list of bytes grew its buffer by copies: 3 us per event).
        """
        columns: list[list[Any]] = [[] for _ in _RAW_SCHEMA]
        for ordinal, (record_id, body) in enumerate(records):
            start = body.find(b"\n") + 1
            try:  # the header line alone, through the same decoder as the Python path
                header, _rest = decode(body[:start] if start else body)
            except (ValueError, KeyError, TypeError):  # the Python path words the reason
                python.add(record_id, body, ordinal)
                continue
            raw = memoryview(body)[start:]
            row = (ordinal, header.app, header.source, header.endpoint, header.channel)
            for column, value in zip(columns, (*row, header.received_ms, header.rid, raw), strict=True):
                column.append(value)
        arrays = [pa.array(c, type=f.type) for c, f in zip(columns[:-1], _RAW_SCHEMA, strict=False)]
        raws = columns[-1]
        offsets = array("q", accumulate((len(r) for r in raws), initial=0))
        buffers = [None, pa.py_buffer(offsets), pa.py_buffer(self._joined(raws, offsets[-1]))]
        raw_column = pa.Array.from_buffers(pa.large_binary(), len(raws), buffers)
        try:  # one UTF-8 check over all: far cheaper than str per record
            arrays.append(raw_column.cast(pa.large_string()))
        except pa.ArrowInvalid:  # some record is not UTF-8 (so not JSON): the Python path keeps it aside
            good = [_utf8(bytes(raw)) for raw in raws]
            for ordinal, ok in zip(columns[0], good, strict=True):
                if not ok:
                    python.add(records[ordinal][0], records[ordinal][1], ordinal)
            mask = pa.array(good)
            arrays = [a.filter(mask) for a in arrays] + [raw_column.filter(mask).cast(pa.large_string())]
        table = pa.Table.from_arrays(arrays, schema=_RAW_SCHEMA)
        return pa.Table.from_batches(table.to_batches(max_chunksize=CHUNK_RECORDS), schema=_RAW_SCHEMA)

    def _joined(self, raws: list[memoryview], total: int) -> memoryview:
        """The raw batches end to end, in a buffer kept from one batch to the next.

        A new buffer of a whole load batch (128 MiB) was new memory for every batch, and the
        kernel's page faults on it cost 0.2 us an event. Reusing it is safe: DuckDB copies
        what it returns, and the buffer is read only while :meth:`normalise` runs.
        """
        if len(self._buffer) < total or len(self._buffer) > 4 * total + (1 << 20):
            self._buffer = bytearray(total)  # grown, or shrunk after a much larger batch
        view = memoryview(self._buffer)
        at = 0
        for raw in raws:
            view[at : at + len(raw)] = raw
            at += len(raw)
        return view[:total]

    def _sql(self, catalog: CatalogSnapshot, con: duckdb.DuckDBPyConnection) -> pa.Table:
        try:
            return con.sql(ROWS_FAST).to_arrow_table()
        except duckdb.Error:  # some record is not JSON: parse under try (NULL for those)
            return con.sql(ROWS_SAFE).to_arrow_table()

    def _split(
        self, catalog: CatalogSnapshot, table: pa.Table
    ) -> tuple[pa.Table, dict[int, set[int]], set[int]]:
        """(rows SQL finished, {ordinal: event indices} for Python, ordinals SQL split)."""
        import pyarrow.compute as pc  # here: a quarter of a second off every server's start-up

        split = set(pc.unique(table.column("ord")).to_pylist())
        python = table.column("slow")
        narrow = table.select(["app", "event"])  # filter two columns, not every column
        tracks = narrow.filter(pc.and_(pc.invert(python), pc.equal(table.column("type"), "track")))
        names = tracks.group_by(["app", "event"]).aggregate([]).to_pylist()
        defined = [f"{n['app']}\x00{n['event']}" for n in names if catalog.lookup(n["app"], n["event"] or "")]
        if defined:
            keys = pc.binary_join_element_wise(table.column("app"), table.column("event"), "\x00")
            python = pc.or_(python, pc.fill_null(pc.is_in(keys, pa.array(defined)), False))
        slow: dict[int, set[int]] = {}
        for ordinal, index in zip(
            *table.select(["ord", "idx"]).filter(python).to_pydict().values(), strict=True
        ):
            slow.setdefault(ordinal, set()).add(index)
        fast = table.select(EVENT_SCHEMA.names)
        if slow:  # a copy of every column: only when some rows go to Python
            fast = fast.filter(pc.invert(python))
        return fast.cast(EVENT_SCHEMA), slow, split
