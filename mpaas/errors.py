"""The root of every error hierarchy in mpaas.

Services raise subclasses of :class:`MpaasError`; the edge around every route
(:class:`mpaas.web.edge.Edge`, ADR 0007) turns them into
``{"error": {"code", "message"}}`` with the class's HTTP status, and the CLI turns
them into one line on stderr. Domains add their own subclasses in their
``errors.py`` (for example ``mpaas.packages.errors.UnsafeArchive``).
"""

from __future__ import annotations


class MpaasError(Exception):
    """An error with a stable snake_case code and an HTTP status."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_dict(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class ConfigError(MpaasError):
    """A setting is missing or malformed; raised at start-up."""

    status = 500
    code = "config_error"


class BadRequest(MpaasError):
    status = 400
    code = "bad_request"


class ValidationError(BadRequest):
    code = "validation_error"


class Unauthorized(MpaasError):
    status = 401
    code = "unauthorized"


class Forbidden(MpaasError):
    status = 403
    code = "forbidden"


class NotFound(MpaasError):
    status = 404
    code = "not_found"


class Conflict(MpaasError):
    status = 409
    code = "conflict"


class PayloadTooLarge(MpaasError):
    status = 413
    code = "payload_too_large"


class RangeNotSatisfiable(MpaasError):
    status = 416
    code = "range_not_satisfiable"


class Unavailable(MpaasError):
    status = 503
    code = "unavailable"
