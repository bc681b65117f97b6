"""The real Segment SDKs, unchanged, pointed at mpaas: totals per event, duplicates, clocks, masking."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mpaas.analytics.store.duckdb import DuckDbStore


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def check_clock(store: DuckDbStore, app_filter: str, original: datetime) -> None:
    """Corrected = receivedAt - (sentAt - timestamp), and the SDK's own timestamp is kept."""
    rows = store.fetch(
        "SELECT timestamp, original_timestamp, sent_at, received_at FROM events WHERE " + app_filter
    )
    assert rows
    for ts, orig, sent, received in rows:
        assert orig == original and sent is not None
        assert ts == received - (sent - orig)
        assert original - timedelta(seconds=5) <= ts <= original + timedelta(seconds=30)


async def test_segment_analytics_python(client: Any, keys: dict[str, str], load: Any) -> None:
    from segment.analytics import Client

    host = str(client.make_url("")).rstrip("/")
    errors: list[Any] = []
    sdk = Client(keys["write"], host=host, gzip=True, max_retries=2, on_error=lambda e, b: errors.append(e))
    when = datetime(2020, 1, 1, 0, 0, 0, 125000, tzinfo=UTC)
    sent: Counter[str] = Counter()
    for i in range(230):
        event = f"Python {i % 3}"
        sdk.track(user_id=f"u{i % 5}", event=event, properties={"i": i}, timestamp=when, message_id=f"py-{i}")
        sent[event] += 1
    sdk.track(user_id=7, event="Python 0", properties={"i": 0}, timestamp=when, message_id="py-0")  # resent
    sdk.identify(anonymous_id="anon-py", traits={"phone": "13812345678"}, message_id="py-identify")
    sdk.alias(previous_id="anon-py", user_id="u1", message_id="py-alias")
    sdk.page(user_id="u1", name="Home", message_id="py-page")
    sdk.screen(user_id="u1", name="Transfer", message_id="py-screen")
    sdk.group(user_id="u1", group_id="corp", message_id="py-group")
    await asyncio.to_thread(sdk.flush)
    await asyncio.to_thread(sdk.join)
    assert errors == []
    store = await load()
    counts = store.counts("bank")
    assert counts == dict(sent) | {"identify": 1, "alias": 1, "Home": 1, "Transfer": 1, "group": 1}
    check_clock(store, "event LIKE 'Python%'", when)
    assert store.fetch("SELECT library FROM events WHERE message_id = 'py-0'")[0][0].startswith(
        "analytics-python/"
    )
    assert store.fetch("SELECT properties FROM events WHERE message_id = 'py-identify'") == [
        ('{"phone":"[masked:mobile]"}',)
    ]


async def test_segment_analytics_node(client: Any, keys: dict[str, str], load: Any, node_sdk: Any) -> None:
    result = await node_sdk(str(client.make_url("")).rstrip("/"), keys["write"], 100)
    assert result["failures"] == []
    store = await load()
    expected = Counter(f"Node {i % 3}" for i in range(100))
    assert store.counts("bank") == dict(expected) | {"identify": 1, "Home": 1}
    check_clock(store, "event LIKE 'Node%'", datetime(2020, 1, 1, 0, 0, 0, 250000, tzinfo=UTC))
    ((props, library),) = store.fetch("SELECT properties, library FROM events WHERE message_id = 'node-0'")
    assert json.loads(props) == {"i": 0, "card": "[masked:card]"}
    assert library.startswith("@segment/analytics-node/")
