"""Refusals of the ledger and the transfers on it, each with its gateway result code.

Money refusals (funds, caps, limits, risk) answer 1001 with a narrower error code; a
request that cannot be right (currency, unknown account, a reused idempotency key)
answers 4001; a risk challenge answers 5000 with what the app must do next.
"""

from __future__ import annotations

from mpaas.banking.errors import BankingRefusal
from mpaas.gateway.codes import ResultCode


class LedgerRefusal(BankingRefusal):
    """A transfer the ledger will not make; nothing was written."""


class InsufficientFunds(LedgerRefusal):
    error_code = "insufficient_funds"


class BalanceCapExceeded(LedgerRefusal):
    """The credit would take a capped account (Class III) over its balance cap."""

    error_code = "balance_cap_exceeded"


class LimitExceeded(LedgerRefusal):
    error_code = "transfer_limit_exceeded"


class CurrencyMismatch(LedgerRefusal):
    result_code = ResultCode.INVALID_PARAMETERS
    error_code = "currency_mismatch"


class AccountNotFound(LedgerRefusal):
    result_code = ResultCode.INVALID_PARAMETERS
    error_code = "account_not_found"


class TransferExists(LedgerRefusal):
    """A transfer id already used for a transfer with other fields."""

    result_code = ResultCode.INVALID_PARAMETERS
    error_code = "transfer_exists"


class TransferNotFound(LedgerRefusal):
    result_code = ResultCode.INVALID_PARAMETERS
    error_code = "transfer_not_found"


class IdempotencyKeyReused(LedgerRefusal):
    """Stripe's rule: a key names one request; the same key with another body is refused."""

    result_code = ResultCode.INVALID_PARAMETERS
    error_code = "idempotency_key_reused"


class TransferDenied(LedgerRefusal):
    error_code = "transfer_denied"


class StepUpRequired(LedgerRefusal):
    result_code = ResultCode.RISK_CHALLENGE
    error_code = "risk_challenge_required"


class NotAwaitingStepUp(LedgerRefusal):
    result_code = ResultCode.INVALID_PARAMETERS
    error_code = "transfer_not_awaiting_step_up"
