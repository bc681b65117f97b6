"""Push providers: APNs (aioapns) and FCM HTTP v1 (pyfcm) behind one :class:`PushProvider` protocol."""

from mpaas.push.providers.base import (
    Notification,
    Outcome,
    PushProvider,
    SendResult,
    parse_retry_after,
)

__all__ = ["Notification", "Outcome", "PushProvider", "SendResult", "parse_retry_after"]
