"""Server-side events: how the domains (releases, push) put their own events into the pipeline.

``await emit(app[ANALYTICS], "bank", "release.install_reported", {...}, user_id=...)``
spools a ``track`` event with source ``server``; the loader treats it like any other,
so reports can join it with what the app said. Give a ``message_id`` that is stable for
the fact you report (a receipt id, a delivery id): a retried emit is then loaded once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from mpaas.analytics.ingest.auth import Sender
from mpaas.analytics.runtime import AnalyticsRuntime
from mpaas.analytics.spool.record import SERVER


async def emit(
    runtime: AnalyticsRuntime,
    app: str,
    event: str,
    properties: dict[str, Any] | None = None,
    *,
    message_id: str | None = None,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    timestamp: datetime | None = None,
    context: dict[str, Any] | None = None,
) -> None:
    """Spool one server-side event durably (raises ``RetryLater`` when the spool cannot)."""
    item: dict[str, Any] = {"type": "track", "event": event, "properties": properties or {}}
    for key, value in (("message_id", message_id), ("user_id", user_id), ("anonymous_id", anonymous_id)):
        if value is not None:
            item[key] = value
    if timestamp is not None:
        item["timestamp"] = timestamp.isoformat()
    raw = orjson.dumps({"events": [item], "context": context or {}})
    dedupe = f"server:{app}:{message_id}" if message_id else ""
    await runtime.append(SERVER, "emit", Sender(app), raw, dedupe)
