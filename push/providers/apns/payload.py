"""What one APNs request carries: the ``apns-*`` headers, the JSON payload, local refusals."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aioapns import PushType

from mpaas.push.providers.base import Notification, Outcome, SendResult

DEFAULT_MAX_PAYLOAD_BYTES = 4096
VOIP_MAX_PAYLOAD_BYTES = 5120

_TOKEN_RE = re.compile(r"[0-9A-Fa-f]{8,200}")

#: Topic suffixes Apple requires for some push types.
_TOPIC_SUFFIX = {
    PushType.VOIP: ".voip",
    PushType.COMPLICATION: ".complication",
    PushType.FILEPROVIDER: ".pushkit.fileprovider",
    PushType.LIVEACTIVITY: ".push-type.liveactivity",
}

PUSH_TYPES = {t.value: t for t in PushType}


def encode_payload(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()


def build_payload(n: Notification) -> dict[str, Any]:
    """The APNs JSON payload: ``aps`` plus the custom data keys at the top level."""
    aps: dict[str, Any] = {}
    if n.title is not None or n.body is not None:
        alert: dict[str, str] = {}
        if n.title is not None:
            alert["title"] = n.title
        if n.body is not None:
            alert["body"] = n.body
        aps["alert"] = alert
    if n.badge is not None:
        aps["badge"] = n.badge
    if n.sound is not None:
        aps["sound"] = n.sound
    if n.push_type == PushType.BACKGROUND.value:
        aps["content-available"] = 1
    payload: dict[str, Any] = {"aps": aps}
    for key, value in n.data.items():
        if key == "aps":
            raise ValueError("data may not contain the reserved key 'aps'")
        payload[key] = value
    return payload


def apns_id_for(message_id: str) -> str:
    """Our delivery id as a canonical UUID: itself if it is one, else a UUIDv5 derived from it."""
    try:
        return str(uuid.UUID(message_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mpaas:delivery:{message_id}"))


class Refused(Exception):
    """A notification refused before sending; ``result`` is what the queue is told."""

    def __init__(self, result: SendResult) -> None:
        super().__init__(result.reason)
        self.result = result


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One notification ready for :meth:`~mpaas.push.providers.http2.Http2ClientProtocol.submit`."""

    apns_id: str
    path: bytes
    fields: list[tuple[bytes, bytes]]
    body: bytes


def prepare(n: Notification, *, topic: str, max_payload: int | None, now: int) -> Outgoing:
    """Check and encode one notification (``now``: UNIX seconds for ``apns-expiration``).

    Tokens that are not hex, unknown push types, a reserved ``aps`` data key and payloads
    over the size limit (``None``: no local limit) raise :class:`Refused`.
    """
    if not _TOKEN_RE.fullmatch(n.token):
        raise Refused(SendResult(outcome=Outcome.INVALID_TOKEN, reason="BadDeviceToken"))
    push_type = PUSH_TYPES.get(n.push_type)
    if push_type is None:
        raise Refused(SendResult(outcome=Outcome.REJECTED, reason="InvalidPushType"))
    try:
        body = encode_payload(build_payload(n))
    except ValueError:
        raise Refused(SendResult(outcome=Outcome.REJECTED, reason="ReservedDataKey")) from None
    if max_payload is not None:
        limit = VOIP_MAX_PAYLOAD_BYTES if push_type is PushType.VOIP else max_payload
        if len(body) > limit:
            raise Refused(SendResult(outcome=Outcome.REJECTED, reason="PayloadTooLarge"))
    apns_id = apns_id_for(n.message_id)
    fields = [
        (b"apns-id", apns_id.encode()),
        (b"apns-topic", (topic + _TOPIC_SUFFIX.get(push_type, "")).encode()),
    ]
    if n.ttl_seconds is not None:
        # 0 means "deliver now or never"; otherwise an absolute UNIX time.
        ttl = n.ttl_seconds
        fields.append((b"apns-expiration", b"0" if ttl <= 0 else str(now + ttl).encode()))
    # Apple refuses priority 10 for background pushes.
    high = n.priority == "high" and push_type is not PushType.BACKGROUND
    fields.append((b"apns-priority", b"10" if high else b"5"))
    if n.collapse_id is not None:
        fields.append((b"apns-collapse-id", n.collapse_id.encode()))
    fields.append((b"apns-push-type", push_type.value.encode()))
    return Outgoing(apns_id, b"/3/device/" + n.token.encode(), fields, body)
