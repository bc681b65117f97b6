"""The self-built channel: a WebSocket per device at ``GET /client/v1/push/ws``.

Protocol (JSON text frames):

- server → client ``{"type": "push", "id": "<delivery id>", "message_id": …, "title", "body", "data"}``
- client → server ``{"type": "ack", "ids": ["<delivery id>", …]}`` (arrived) or
  ``{"type": "opened", "ids": […]}``; the server answers ``{"type": "acked", "ids": […]}``.

The database is the hand-off between processes: deliveries for the channel ``ws`` are
rows like any other, so the process that holds a device's socket need not be the one
that queued the message. Each process runs one :class:`WsHub` poller that looks for
new ``ws`` rows (by id, with a lag window for transactions that commit out of id
order) and wakes the local sockets of those devices; each socket then reads its own
device's due rows. On connect every unacknowledged delivery (pending, or sent and never
acked) is sent again: that is the redelivery after reconnect. aiohttp's ``heartbeat``
pings and closes a socket whose pong does not come back, which ends the handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from sqlalchemy import exists, func, select, update
from sqlmodel import col
from sqlmodel import select as model_select

from mpaas.push import receipts
from mpaas.push.errors import InvalidPushRequest
from mpaas.push.messages import localize
from mpaas.push.models import PENDING, SENT, PushMessage
from mpaas.push.queue.outcomes import report_deliveries
from mpaas.push.queue.tables import DELIVERIES, RECEIPTS, execute
from mpaas.storage.db import Database, utcnow

log = logging.getLogger("mpaas.push.ws")

#: New rows are looked for again for this long, for transactions that commit late.
CURSOR_LAG_SECONDS = 10.0
#: Each socket also re-reads its rows this often, whatever the hub saw.
SAFETY_POLL_SECONDS = 60.0
FRAME_BATCH = 100
REPLACED_CLOSE_CODE = 4001


@dataclass(eq=False)
class WsConnection:
    device_pk: int
    locale: str | None
    ws: web.WebSocketResponse
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: Delivery ids written on this socket; a reconnect starts empty, hence redelivery.
    sent: set[int] = field(default_factory=set)


class WsHub:
    """The sockets of this process, and one poller that wakes them when their rows appear."""

    def __init__(self, db: Database, *, poll_interval: float, heartbeat: float) -> None:
        self.db = db
        self.poll_interval = poll_interval
        self.heartbeat = heartbeat
        self.connections: dict[int, WsConnection] = {}
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._marks: deque[tuple[float, int]] = deque()

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll_loop(), name="push-ws-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for conn in list(self.connections.values()):
            await conn.ws.close(code=1001, message=b"server shutting down")

    def poke(self) -> None:
        """New ws rows were queued in this process: poll now."""
        self._poke.set()

    def attach(self, conn: WsConnection) -> WsConnection | None:
        """Register a socket; returns the one it replaces (same device), if any."""
        old = self.connections.get(conn.device_pk)
        self.connections[conn.device_pk] = conn
        return old

    def detach(self, conn: WsConnection) -> None:
        if self.connections.get(conn.device_pk) is conn:
            del self.connections[conn.device_pk]

    async def _poll_loop(self) -> None:
        async with self.db.session() as s:
            start = (await execute(s, select(func.max(DELIVERIES.c.id)))).scalar() or 0
        self._marks.append((time.monotonic(), int(start)))
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), timeout=self.poll_interval)
            self._poke.clear()
            try:
                await self.poll_once()
            except Exception:
                log.exception("ws hub poll failed; retrying")

    async def poll_once(self) -> None:
        now = time.monotonic()
        while len(self._marks) > 1 and self._marks[1][0] <= now - CURSOR_LAG_SECONDS:
            self._marks.popleft()
        since = self._marks[0][1]
        d = DELIVERIES
        query = (
            select(d.c.id, d.c.device_pk)
            .where(d.c.id > since, d.c.channel == "ws", d.c.status == PENDING)
            .order_by(d.c.id)
            .limit(10_000)
        )
        async with self.db.session() as s:
            rows = (await execute(s, query)).all()
        if rows:
            self._marks.append((now, int(rows[-1].id)))
        for row in rows:
            conn = self.connections.get(row.device_pk)
            if conn is not None:
                conn.wake.set()


async def due_frames(db: Database, conn: WsConnection) -> list[dict[str, Any]]:
    """Unacknowledged, unexpired ws deliveries of this device not yet written on this socket."""
    d = DELIVERIES
    now = utcnow()
    arrived = exists().where(RECEIPTS.c.delivery_id == d.c.id, RECEIPTS.c.kind == "arrived")
    query = (
        select(d.c.id, d.c.message_id)
        .where(
            d.c.device_pk == conn.device_pk,
            d.c.channel == "ws",
            d.c.status.in_((PENDING, SENT)),
            d.c.expires_at > now,
            d.c.next_attempt_at <= now,
            ~arrived,
        )
        .order_by(d.c.id)
        .limit(FRAME_BATCH + len(conn.sent))
    )
    async with db.session() as s:
        rows = [r for r in (await execute(s, query)).all() if r.id not in conn.sent][:FRAME_BATCH]
        if not rows:
            return []
        message_ids = {r.message_id for r in rows}
        messages = {
            msg.id: msg
            for msg in (
                await s.exec(model_select(PushMessage).where(col(PushMessage.id).in_(message_ids)))
            ).all()
        }
    frames = []
    for row in rows:
        message = messages[row.message_id]
        title, body = localize(message, conn.locale)
        frames.append(
            {
                "type": "push",
                "id": str(row.id),
                "message_id": str(message.id),
                "title": title,
                "body": body,
                "data": message.data,
                "collapse_id": message.collapse_id or f"mpaas-{message.id}",
                "expires_at": message.expires_at,
            }
        )
    return frames


async def mark_sent(db: Database, ids: list[int]) -> None:
    now = utcnow()
    d = DELIVERIES
    async with db.write() as s:
        await execute(
            s,
            update(d)
            .where(d.c.id.in_(ids), d.c.status == PENDING)
            .values(
                status=SENT, sent_at=now, finished_at=now, attempts=d.c.attempts + 1, last_attempt_at=now
            ),
        )
    # The frame is written: handed over and accepted, as far as the WebSocket channel goes.
    report_deliveries(db, [(i, stage, None) for i in ids for stage in ("sent", "delivered")], now)


async def send_loop(db: Database, conn: WsConnection) -> None:
    from mpaas.web.api import dumps

    while not conn.ws.closed:
        frames = await due_frames(db, conn)
        if frames:
            ids = []
            for frame in frames:
                await conn.ws.send_str(dumps(frame).decode())
                ids.append(int(frame["id"]))
                conn.sent.add(int(frame["id"]))
            # Marked after writing: a crash in between leaves the row pending → sent again.
            await mark_sent(db, ids)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(conn.wake.wait(), timeout=SAFETY_POLL_SECONDS)
        conn.wake.clear()


async def handle_client_frame(db: Database, conn: WsConnection, raw: str) -> None:
    try:
        frame = json.loads(raw)
    except ValueError:
        await conn.ws.send_json({"type": "error", "code": "invalid_json"})
        return
    kind = frame.get("type") if isinstance(frame, dict) else None
    if kind not in ("ack", "opened"):
        await conn.ws.send_json({"type": "error", "code": "unknown_type"})
        return
    raw_ids = frame.get("ids", [frame.get("id")] if "id" in frame else [])
    try:
        if not isinstance(raw_ids, list) or not 1 <= len(raw_ids) <= receipts.MAX_RECEIPTS:
            raise InvalidPushRequest("ids must be a non-empty list")
        ids = [receipts.parse_delivery_id(i) for i in raw_ids]
    except InvalidPushRequest as exc:
        await conn.ws.send_json({"type": "error", "code": exc.code, "message": exc.message})
        return
    receipt_kind = "arrived" if kind == "ack" else "opened"
    result = await receipts.record_receipts(db, conn.device_pk, [(i, receipt_kind) for i in ids], utcnow())
    await conn.ws.send_json({"type": "acked", "ids": [str(i) for i in result.accepted]})


async def serve(
    request: web.Request, db: Database, hub: WsHub, device_pk: int, locale: str | None
) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=hub.heartbeat, max_msg_size=256 * 1024)
    await ws.prepare(request)
    conn = WsConnection(device_pk=device_pk, locale=locale, ws=ws)
    replaced = hub.attach(conn)
    if replaced is not None:
        await replaced.ws.close(code=REPLACED_CLOSE_CODE, message=b"replaced by a newer connection")
    sender = asyncio.create_task(send_loop(db, conn), name=f"push-ws-{device_pk}")
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await handle_client_frame(db, conn, msg.data)
            elif msg.type == WSMsgType.ERROR:
                break
    finally:
        hub.detach(conn)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
    return ws
