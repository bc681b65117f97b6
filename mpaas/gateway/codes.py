"""Result codes of the gateway, MGS style: each with its HTTP status, name and fixed message.

Every gateway answer carries its code twice, in the ``X-Mgs-Result-Code`` header and in
the body's ``result_code``. Refusals carry the project's error object too, so generic
HTTP tooling sees ``{"error": {"code", "message"}}`` with a fitting status. Messages
are fixed sentences or ones written for the caller; they never hold exception text,
SQL, stack traces or the names of internal modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from mpaas.errors import MpaasError


class ResultCode(IntEnum):
    SUCCESS = 1000
    ACCESS_DENIED = 1001
    RATE_LIMITED = 1002
    LOGIN_REQUIRED = 2000
    UNKNOWN_OPERATION = 3000
    TIER_NOT_ALLOWED = 3001
    INVALID_PARAMETERS = 4001
    SIGNATURE_INVALID = 4002
    REQUEST_EXPIRED = 4003
    RISK_CHALLENGE = 5000
    SERVER_ERROR = 6666
    UPSTREAM_UNAVAILABLE = 7000


@dataclass(frozen=True)
class CodeInfo:
    status: int
    name: str
    message: str


CODES: dict[ResultCode, CodeInfo] = {
    ResultCode.SUCCESS: CodeInfo(200, "success", "success"),
    ResultCode.ACCESS_DENIED: CodeInfo(403, "access_denied", "access denied"),
    ResultCode.RATE_LIMITED: CodeInfo(429, "rate_limited", "too many requests; retry later"),
    ResultCode.LOGIN_REQUIRED: CodeInfo(401, "login_required", "a valid session is required; log in"),
    ResultCode.UNKNOWN_OPERATION: CodeInfo(404, "unknown_operation", "no such operation or version"),
    ResultCode.TIER_NOT_ALLOWED: CodeInfo(
        403, "tier_not_allowed", "this operation is not available at the user's tier"
    ),
    ResultCode.INVALID_PARAMETERS: CodeInfo(400, "invalid_parameters", "invalid request parameters"),
    ResultCode.SIGNATURE_INVALID: CodeInfo(401, "signature_invalid", "the request signature is invalid"),
    ResultCode.REQUEST_EXPIRED: CodeInfo(
        401, "request_expired", "the request is outside the clock window or was already used"
    ),
    ResultCode.RISK_CHALLENGE: CodeInfo(428, "risk_challenge_required", "an additional check is required"),
    ResultCode.SERVER_ERROR: CodeInfo(500, "server_error", "internal error"),
    ResultCode.UPSTREAM_UNAVAILABLE: CodeInfo(
        503, "upstream_unavailable", "the service behind this operation is unavailable; retry later"
    ),
}


class GatewayError(MpaasError):
    """A refusal with a result code; its status and error code follow from :data:`CODES`.

    ``code`` narrows the error code (``one_time_code_rejected`` rather than ``access_denied``);
    ``retry_after`` (seconds) becomes a ``Retry-After`` header; ``detail`` is a small
    JSON-able object for the caller (for example the fields that failed validation or
    the kind of challenge), never internal state.
    """

    def __init__(
        self,
        result: ResultCode,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        detail: object = None,
        code: str | None = None,
    ) -> None:
        info = CODES[result]
        super().__init__(message or info.message, code=code or info.name, status=info.status)
        self.result = result
        self.retry_after = retry_after
        self.detail = detail


def markdown_table() -> str:
    """The result codes as the Markdown table in docs/gateway.md (a test compares them)."""
    rows = ["| code | HTTP | error code | meaning |", "|---:|---:|---|---|"]
    for code, info in CODES.items():
        rows.append(f"| {int(code)} | {info.status} | `{info.name}` | {info.message} |")
    return "\n".join(rows)
