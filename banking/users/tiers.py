"""The four tiers and the state machine between them.

=============  =====  ==============================================================
tier           level  how a user reaches it
=============  =====  ==============================================================
``visitor``    0      a device with a visitor session; no user yet
``registered`` 1      phone number verified by a one-time code
``e_account``  2      Class II/III e-account: identity checked by the verifier and a
                      card at another bank bound
``full``       3      Class I account holder: an operator set the in-branch
                      verification flag, then the user upgrades
=============  =====  ==============================================================

Only these steps exist, one tier at a time and upwards; each is written with its
evidence to ``bank_tier_events`` in the transaction that changes the tier, and the
user's sessions are rotated.
"""

from __future__ import annotations

from dataclasses import dataclass

from mpaas.banking.errors import InvalidOperation, TransitionRefused
from mpaas.banking.models import BankUser

VISITOR, REGISTERED, E_ACCOUNT, FULL = "visitor", "registered", "e_account", "full"
TIERS: tuple[str, ...] = (VISITOR, REGISTERED, E_ACCOUNT, FULL)
LEVELS: dict[str, int] = {name: level for level, name in enumerate(TIERS)}


def level_of(tier: str) -> int:
    try:
        return LEVELS[tier]
    except KeyError:
        raise InvalidOperation(f"unknown tier {tier!r}; choose one of {', '.join(TIERS)}") from None


def check_tier(tier: str) -> str:
    level_of(tier)
    return tier


@dataclass(frozen=True)
class Step:
    source: str
    target: str
    reason: str
    #: Facts about the user that must hold (names of checks in :func:`missing`).
    requires: tuple[str, ...]


STEPS: dict[tuple[str, str], Step] = {
    (VISITOR, REGISTERED): Step(VISITOR, REGISTERED, "phone_verified", ()),
    (REGISTERED, E_ACCOUNT): Step(REGISTERED, E_ACCOUNT, "e_account_opened", ("identity", "card")),
    (E_ACCOUNT, FULL): Step(E_ACCOUNT, FULL, "in_branch_verified", ("branch",)),
}


def missing(user: BankUser, step: Step) -> list[str]:
    """The preconditions of ``step`` the user does not meet yet."""
    facts = {
        "identity": user.identity_ref is not None,
        "card": user.card_ref is not None,
        "branch": user.branch_verified_at is not None,
    }
    return [name for name in step.requires if not facts[name]]


def step_to(user: BankUser, target: str) -> Step:
    """The step from the user's tier to ``target``, or refuse with the reason."""
    check_tier(target)
    step = STEPS.get((user.tier, target))
    if step is None:
        raise TransitionRefused(f"a user at tier {user.tier} cannot move to tier {target}")
    lacking = missing(user, step)
    if lacking:
        needs = {"identity": "an identity check", "card": "a bound card", "branch": "in-branch verification"}
        raise TransitionRefused(
            f"moving to tier {target} needs {' and '.join(needs[n] for n in lacking)}",
            detail={"missing": lacking},
        )
    return step
