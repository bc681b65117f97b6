"""Errors of the risk engine's admin side (rule sets, lists, decisions)."""

from __future__ import annotations

from mpaas.banking.errors import BankingError
from mpaas.errors import NotFound, ValidationError


class InvalidRuleSet(BankingError, ValidationError):
    """A rule set that does not validate or whose CEL does not compile (400)."""

    code = "invalid_ruleset"


class InvalidListEntry(BankingError, ValidationError):
    code = "invalid_list_entry"


class RuleSetNotFound(BankingError, NotFound):
    code = "ruleset_not_found"


class DecisionNotFound(BankingError, NotFound):
    code = "risk_decision_not_found"


class InvalidCase(BankingError, ValidationError):
    code = "invalid_case"


class CaseNotFound(BankingError, NotFound):
    code = "risk_case_not_found"


class InvalidReview(BankingError, ValidationError):
    """A rule set transition that the four-eyes workflow does not allow (409)."""

    code = "invalid_review"
    status = 409
