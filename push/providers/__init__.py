"""Push providers: APNs (own HTTP/2 client, :mod:`.http2`) and FCM HTTP v1 (pyfcm), one protocol."""

from mpaas.push.providers.base import (
    Notification,
    Outcome,
    PushProvider,
    SendResult,
    parse_retry_after,
)

__all__ = ["Notification", "Outcome", "PushProvider", "SendResult", "parse_retry_after"]
