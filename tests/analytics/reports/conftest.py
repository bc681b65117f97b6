"""One small fixed data set, loaded through the stores' own ``load`` into DuckDB and into
ClickHouse (chdb), for every report test. Times are written in Asia/Shanghai (UTC+8).

Persons (platform, app version, device model; packages "h5.transfer"):
- P1: device a1 (ios, 2.0, iPhone15), anonymous until it identifies as u1 on 03-02;
- P2: user u2 on device a2 (android, 2.0, Pixel8), identified from its first event;
- P3: device a3 (ios, 2.1, iPhone15), never identified;
- P4: user u4 on device a4 (android, 2.1, Pixel8).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from mpaas.analytics.loader.rows import EVENT_SCHEMA, INVALID_SCHEMA, Rows
from mpaas.analytics.reports.dialect import CLICKHOUSE, DUCKDB
from mpaas.analytics.reports.engine import StoreEngine
from mpaas.analytics.store.base import LoadBatch
from mpaas.analytics.store.clickhouse import ChdbConnection, ClickHouseStore
from mpaas.analytics.store.duckdb import DuckDbStore

SHANGHAI = timedelta(hours=8)
DEVICES = {
    "a1": ("ios", "2.0", "iPhone15"),
    "a2": ("android", "2.0", "Pixel8"),
    "a3": ("ios", "2.1", "iPhone15"),
    "a4": ("android", "2.1", "Pixel8"),
}
V10 = [{"kind": "offline", "id": "h5.transfer", "version": "1.0"}]
V11 = [{"kind": "offline", "id": "h5.transfer", "version": "1.1"}]


def local(stamp: str) -> datetime:
    """'03-01 10:00[:ss]' in Asia/Shanghai, 2026, as a UTC datetime."""
    fmt = "%Y-%m-%d %H:%M:%S" if stamp.count(":") == 2 else "%Y-%m-%d %H:%M"
    return datetime.strptime(f"2026-{stamp}", fmt).replace(tzinfo=UTC) - SHANGHAI


#: (message id, when, device, user id, event or "identify", properties, packages, source)
EVENTS: list[tuple[str, datetime, str, str | None, str, dict[str, Any], Any, str]] = [
    # P1: anonymous on 03-01, identifies as u1 on 03-02
    ("m01", local("03-01 10:00"), "a1", None, "app_open", {}, V10, "native"),
    ("m02", local("03-01 10:01"), "a1", None, "transfer_start", {"amount": 100}, V10, "native"),
    ("m03", local("03-02 09:00"), "a1", "u1", "identify", {}, V10, "native"),
    ("m04", local("03-02 09:05"), "a1", "u1", "transfer_confirm", {}, V10, "native"),
    ("m05", local("03-02 09:06"), "a1", "u1", "transfer_done", {}, V10, "native"),
    (
        "m05b",
        local("03-02 09:07"),
        "a1",
        "u1",
        "ux.network_error",
        {"host": "api.bank", "path_template": "/transfer", "status": 500},
        V10,
        "native",
    ),
    (
        "m05c",
        local("03-02 09:08"),
        "a1",
        "u1",
        "ux.h5_perf",
        {
            "page": "/t",
            "load_ms": 800,
            "white_screen_ms": 100,
            "offline_package_id": "h5.transfer",
            "offline_package_version": "1.0",
        },
        V10,
        "native",
    ),
    (
        "m05d",
        local("03-02 09:09"),
        "a1",
        "u1",
        "ux.h5_perf",
        {
            "page": "/t",
            "load_ms": 1200,
            "white_screen_ms": 300,
            "offline_package_id": "h5.transfer",
            "offline_package_version": "1.0",
        },
        V10,
        "native",
    ),
    ("m06", local("03-04 08:00"), "a1", "u1", "app_open", {}, V11, "native"),
    (
        "m06a",
        local("03-04 08:01"),
        "a1",
        "u1",
        "ux.app_start",
        {"start_type": "cold", "duration_ms": 1000},
        V11,
        "native",
    ),
    (
        "m06b",
        local("03-04 08:02"),
        "a1",
        "u1",
        "ux.app_start",
        {"start_type": "cold", "duration_ms": 2000},
        V11,
        "native",
    ),
    (
        "m06c",
        local("03-04 08:03"),
        "a1",
        "u1",
        "ux.app_start",
        {"start_type": "warm", "duration_ms": 500},
        V11,
        "native",
    ),
    # P2
    ("m07", local("03-01 12:00"), "a2", "u2", "identify", {}, V10, "native"),
    ("m08", local("03-01 12:01"), "a2", "u2", "transfer_start", {"amount": 5000}, V10, "native"),
    ("m09", local("03-01 12:01"), "a2", "u2", "transfer_confirm", {}, V10, "native"),  # same instant as m08
    ("m10", local("03-01 12:03"), "a2", "u2", "transfer_confirm", {}, V10, "native"),
    ("m11", local("03-03 12:00"), "a2", "u2", "app_open", {}, None, "native"),
    # P3: 16:30 UTC on 03-01 is 00:30 on 03-02 in Shanghai
    ("m12", datetime(2026, 3, 1, 16, 30, tzinfo=UTC), "a3", None, "app_open", {}, None, "native"),
    ("m13", local("03-02 10:00"), "a3", None, "transfer_start", {"amount": 100}, None, "native"),
    ("m13a", local("03-02 10:01"), "a3", None, "ux.anr", {"duration_ms": 6000}, None, "native"),
    (
        "m14",
        local("03-16 10:00"),
        "a3",
        None,
        "transfer_confirm",
        {},
        None,
        "native",
    ),  # start + 14 days exactly
    # P4: first event exactly at the start of 03-01, one exactly at the end of 03-07
    ("m15", local("03-01 00:00"), "a4", "u4", "app_open", {}, V11, "native"),
    ("m16", local("03-08 00:00"), "a4", "u4", "app_open", {}, V11, "native"),
    ("m17", local("03-05 09:00"), "a4", "u4", "transfer_start", {"amount": 200}, V11, "native"),
    (
        "m17a",
        local("03-05 09:01"),
        "a4",
        "u4",
        "ux.app_start",
        {"start_type": "cold", "duration_ms": 3000},
        V11,
        "native",
    ),
    (
        "m17b",
        local("03-05 09:02"),
        "a4",
        "u4",
        "ux.app_start",
        {"start_type": "cold", "duration_ms": 4000},
        V11,
        "native",
    ),
    ("m18", local("03-05 09:10"), "a4", "u4", "transfer_confirm", {}, V11, "native"),
    ("m19", local("03-05 09:30"), "a4", "u4", "transfer_done", {}, V11, "native"),
    ("m19a", local("03-05 09:31"), "a4", "u4", "ux.crash", {"fingerprint": "f1"}, V11, "native"),
    # the server's: a2 installs 1.1 on 03-02 (not activity)
    (
        "s01",
        local("03-02 10:00"),
        "a2",
        None,
        "update.reported",
        {"package_id": "h5.transfer", "version": "1.1", "status": "installed", "release_id": 1},
        None,
        "server",
    ),
]


def _push(
    mid: str,
    when: str,
    device: str,
    event: str,
    push: str,
    delivery: str,
    provider: str | None,
    source: str = "server",
) -> tuple[str, datetime, str, str | None, str, dict[str, Any], Any, str]:
    props = {"push_id": push, "delivery_id": delivery} | ({"provider": provider} if provider else {})
    return (mid, local(when), device, None, event, props, None, source)


EVENTS += [
    _push("p01", "03-06 10:00", "a1", "push.sent", "p1", "d1", "apns"),
    _push("p02", "03-06 10:00", "a2", "push.sent", "p1", "d2", "fcm"),
    _push("p03", "03-06 10:00", "a3", "push.sent", "p1", "d3", "apns"),
    _push("p04", "03-06 10:00", "a4", "push.sent", "p1", "d4", "fcm"),
    _push("p05", "03-06 10:00:01", "a1", "push.delivered", "p1", "d1", "apns"),
    _push("p06", "03-06 10:00:01", "a2", "push.delivered", "p1", "d2", "fcm"),
    _push("p07", "03-06 10:00:01", "a3", "push.delivered", "p1", "d3", "apns"),
    _push("p08", "03-06 10:00:01", "a4", "push.failed", "p1", "d4", "fcm"),
    _push("p09", "03-06 10:00:02", "a1", "push.arrived", "p1", "d1", "apns"),
    _push("p10", "03-06 10:00:02", "a2", "push.arrived", "p1", "d2", "fcm"),
    _push("p11", "03-06 10:00:02", "a2", "ux.push_received", "p1", "d2", None, "native"),  # said twice
    _push("p12", "03-06 10:05", "a1", "push.opened", "p1", "d1", "apns"),
    _push("p13", "03-06 11:00", "a1", "push.sent", "p2", "d5", "apns"),
    _push("p14", "03-06 11:05", "a1", "ux.push_opened", "p2", "d5", None, "native"),  # only the open
]


#: App "dst": two events around New York's change to summer time (2026-03-08 07:00 UTC).
#: 03-08 04:30 UTC is 03-07 23:30 EST; 03-09 04:30 UTC is 03-09 00:30 EDT (with the
#: winter offset it would wrongly be 03-08 23:30).
DST_EVENTS = [
    ("n1", datetime(2026, 3, 8, 4, 30, tzinfo=UTC), "a1", None, "app_open", {}, None, "native"),
    ("n2", datetime(2026, 3, 9, 4, 30, tzinfo=UTC), "a1", None, "app_open", {}, None, "native"),
]


def _rows() -> LoadBatch:
    rows = Rows(EVENT_SCHEMA)
    received = datetime(2026, 3, 20, tzinfo=UTC)
    everything = [(e, "bank") for e in EVENTS] + [(e, "dst") for e in DST_EVENTS]
    for seq, ((mid, when, device, user, event, props, packages, source), app) in enumerate(everything):
        platform, version, model = DEVICES[device] if source != "server" else (None, None, None)
        kind = "identify" if event == "identify" else "track"
        rows.rows.append(
            (
                seq,
                app,
                source,
                None,
                kind,
                None if kind == "identify" else event,
                mid,
                user,
                device,
                None,
                None,
                when.isoformat(),
                None,
                received,
                version,
                platform,
                platform,
                None,
                model,
                None,
                None,
                None if packages is None else orjson.dumps(packages).decode(),
                orjson.dumps(props).decode(),
                "{}",
                [],
            )
        )
    return LoadBatch(
        events=rows.table(), invalid=Rows(INVALID_SCHEMA).table(), positions={"seg-1": len(EVENTS)}
    )


@pytest.fixture(scope="session", params=["duckdb", "clickhouse"])
def engine(request: pytest.FixtureRequest) -> Iterator[StoreEngine]:
    """The data set in one engine, loaded once per test session (the reports only read it)."""
    if request.param == "duckdb":
        store: Any = DuckDbStore(":memory:")
        dialect = DUCKDB
    else:
        store = ClickHouseStore(ChdbConnection())
        dialect = CLICKHOUSE
    result = store.load(_rows())
    assert result.inserted == len(EVENTS) + len(DST_EVENTS)
    yield StoreEngine(store, dialect)
    store.close()
