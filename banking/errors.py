"""Errors of the banking domain.

Refusals a gateway caller can meet are :class:`mpaas.gateway.codes.GatewayError`\\ s with
their result code and a narrower error code; admin-side errors pair with the
:mod:`mpaas.errors` base that decides their HTTP status.
"""

from __future__ import annotations

from mpaas.errors import Conflict, MpaasError, NotFound, ValidationError
from mpaas.gateway.codes import GatewayError, ResultCode


class BankingRefusal(GatewayError):
    """A refusal with a fixed result code and error code per subclass."""

    result_code = ResultCode.ACCESS_DENIED
    error_code = "access_denied"

    def __init__(self, message: str, *, retry_after: float | None = None, detail: object = None) -> None:
        super().__init__(
            self.result_code, message, retry_after=retry_after, detail=detail, code=self.error_code
        )


class CodeRejected(BankingRefusal):
    """Wrong, expired, used or exhausted one-time code (one answer for all, on purpose)."""

    error_code = "one_time_code_rejected"


class TooManyCodes(BankingRefusal):
    result_code = ResultCode.RATE_LIMITED
    error_code = "too_many_codes"


class TransitionRefused(BankingRefusal):
    """A tier change whose precondition does not hold."""

    error_code = "tier_transition_refused"


class VerificationFailed(BankingRefusal):
    error_code = "verification_failed"


class IdentityInUse(BankingRefusal):
    error_code = "identity_in_use"


class BankingError(MpaasError):
    """Base of the admin-side errors; defines no status, a paired base decides it."""


class UserNotFound(BankingError, NotFound):
    code = "bank_user_not_found"


class SessionNotFound(BankingError, NotFound):
    code = "bank_session_not_found"


class OperationNotFound(BankingError, NotFound):
    code = "operation_not_found"


class OperationExists(BankingError, Conflict):
    code = "operation_exists"


class InvalidOperation(BankingError, ValidationError):
    code = "invalid_operation"


class InvalidCatalog(BankingError, ValidationError):
    code = "invalid_catalog"


class ConfigurationError(BankingError):
    """A plug-in (SMS provider, verifier) named in settings cannot be loaded."""

    status = 500
    code = "config_error"
