"""Console errors: each leaves as ``{"error": {"code", "message"}}`` with its status."""

from __future__ import annotations

import math

from mpaas.errors import Forbidden, MpaasError, NotFound, Unauthorized


class SignInFailed(Unauthorized):
    """Wrong user name or password, or a disabled account: the same answer for each."""

    code = "sign_in_failed"


class SignInLocked(MpaasError):
    """Too many failures for this user name: wait ``retry_after`` seconds."""

    status = 429
    code = "sign_in_locked"

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(f"too many failed sign-ins for this user; try again in {self.retry_after} s")


class SessionExpired(Unauthorized):
    code = "session_expired"


class CsrfFailed(Forbidden):
    code = "csrf_failed"


class AccountNotFound(NotFound):
    code = "account_not_found"
