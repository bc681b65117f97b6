"""The APNs connection: our HTTP/2 client plus aioapns' own entry point, ``send_notification``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aioapns import NotificationRequest
from aioapns.common import NotificationResult
from aioapns.connection import APNsBaseClientProtocol

from mpaas.push.providers.apns.answers import ApnsAnswer
from mpaas.push.providers.apns.payload import encode_payload
from mpaas.push.providers.http2 import Credential, Http2ClientProtocol


def request_fields(request: NotificationRequest, now: int, default_topic: str) -> list[tuple[bytes, bytes]]:
    """The ``apns-*`` headers of an aioapns request (``now``: UNIX seconds for ``apns-expiration``)."""
    fields = [
        (b"apns-id", request.notification_id.encode()),
        (b"apns-topic", (request.apns_topic or default_topic).encode()),
    ]
    if request.time_to_live is not None:
        # 0 means "deliver now or never"; otherwise an absolute UNIX time.
        ttl = request.time_to_live
        fields.append((b"apns-expiration", b"0" if ttl <= 0 else str(now + ttl).encode()))
    if request.priority is not None:
        fields.append((b"apns-priority", str(request.priority).encode()))
    if request.collapse_key is not None:
        fields.append((b"apns-collapse-id", request.collapse_key.encode()))
    if request.push_type is not None:
        fields.append((b"apns-push-type", request.push_type.value.encode()))
    return fields


class ApnsClientProtocol(Http2ClientProtocol):
    """One connection to APNs. ``ApnsProvider`` submits prepared requests on it directly;
    :meth:`send_notification` keeps aioapns' API working on the same connection."""

    def __init__(
        self,
        authority: str,
        *,
        topic: str,
        clock: Callable[[], float] = time.time,
        credential: Credential | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        on_connection_lost: Callable[[APNsBaseClientProtocol], Any] | None = None,
    ) -> None:
        """``topic`` is the default ``apns-topic``; ``clock`` (UNIX seconds) dates ``apns-expiration``."""
        super().__init__(authority, credential=credential, loop=loop, on_connection_lost=on_connection_lost)
        self.apns_topic = topic
        self.clock = clock

    async def send_notification(self, request: NotificationRequest) -> NotificationResult:
        """aioapns' entry point, for completeness (``ApnsProvider`` calls :meth:`submit`)."""
        fields = request_fields(request, int(self.clock()), self.apns_topic)
        path = b"/3/device/" + request.device_token.encode()
        queued = self.submit(path, fields, encode_payload(request.message), 10.0)
        try:
            response = await queued.future
        except asyncio.CancelledError:
            self.abandon(queued)
            raise
        return ApnsAnswer.from_response(request.notification_id, response)
