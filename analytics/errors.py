"""Errors of the analytics domain; each pairs with an :mod:`mpaas.errors` base for its status.

The ingest routes follow the 4xx rule (docs/analytics.md): a 4xx only for input that can
never succeed, and :class:`RetryLater` (503 or 429 with ``Retry-After``) for everything
that may succeed when sent again.
"""

from __future__ import annotations

from mpaas.errors import BadRequest, Conflict, MpaasError, NotFound, PayloadTooLarge, Unauthorized
from mpaas.errors import ValidationError as _ValidationError


class AnalyticsError(MpaasError):
    """Base of the analytics domain; defines no status, so a paired base decides it."""


class InvalidWriteKey(AnalyticsError, Unauthorized):
    code = "invalid_write_key"


class InvalidDeploymentKey(AnalyticsError, Unauthorized):
    code = "invalid_deployment_key"


class InvalidEvents(AnalyticsError, BadRequest):
    """The body parses but is not a batch of event objects."""

    code = "invalid_events"


class EventTooLarge(AnalyticsError, PayloadTooLarge):
    code = "event_too_large"


class BatchTooLarge(AnalyticsError, PayloadTooLarge):
    code = "batch_too_large"


class UnsupportedEncoding(AnalyticsError):
    status = 415
    code = "unsupported_content_encoding"


class RetryLater(AnalyticsError):
    """The request may succeed later: answered with ``Retry-After``, never a data-losing 4xx."""

    status = 503
    code = "spool_unavailable"

    def __init__(self, message: str, *, retry_after: int = 1, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class Overloaded(RetryLater):
    """Too much is waiting for the disk (or the broker): slow down, as a 429 asks."""

    status = 429
    code = "overloaded"


class InvalidDefinition(AnalyticsError, _ValidationError):
    code = "invalid_event_definition"


class EventNotDefined(AnalyticsError, NotFound):
    code = "event_not_defined"


class WriteKeyNotFound(AnalyticsError, NotFound):
    code = "write_key_not_found"


class StoreLocked(AnalyticsError, Conflict):
    """Another process holds the event store's writer lock."""

    code = "analytics_store_locked"
