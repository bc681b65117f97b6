"""Plug-ins of the user system: the SMS provider and the identity verifier.

Both are :class:`typing.Protocol`\\ s chosen by name in settings
(``MPAAS_BANKING_SMS_PROVIDER``, ``MPAAS_BANKING_IDENTITY_VERIFIER``). Built in:
``console`` and ``memory`` SMS providers, and the ``sandbox`` verifier. A bank ships its
own as an entry point in the group ``mpaas.sms_providers`` or ``mpaas.identity_verifiers``:
a callable taking the :class:`mpaas.settings.Settings` and returning the provider.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol

from mpaas.banking.errors import ConfigurationError
from mpaas.settings import Settings

log = logging.getLogger("mpaas.banking.sms")

ID_NUMBER_RE = re.compile(r"[1-9][0-9]{16}[0-9X]")
PAN_RE = re.compile(r"[0-9]{16,19}")


class SmsProvider(Protocol):
    async def send(self, phone: str, text: str) -> None:
        """Deliver ``text`` to ``phone`` (E.164); raise to report a failure."""


@dataclass(frozen=True)
class Sms:
    phone: str
    text: str


class ConsoleSms:
    """Development only: each message as a log line (stderr), so that one can log in by hand.
    Through the log's queue: a stderr nobody reads never blocks the server (ADR 0021)."""

    async def send(self, phone: str, text: str) -> None:
        log.warning("[sms to %s] %s", phone, text)


class MemorySms:
    """Keeps messages in memory (``outbox``), for tests and for embedding mpaas in a harness."""

    def __init__(self) -> None:
        self.outbox: list[Sms] = []

    async def send(self, phone: str, text: str) -> None:
        self.outbox.append(Sms(phone, text))


@dataclass(frozen=True)
class IdentityClaim:
    name: str
    id_number: str


@dataclass(frozen=True)
class CardClaim:
    number: str
    bank: str


@dataclass(frozen=True)
class Verification:
    ok: bool
    #: The verifier's reference for the check (stored, shown to operators).
    reference: str = ""
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class IdentityVerifier(Protocol):
    async def verify_identity(self, claim: IdentityClaim) -> Verification:
        """Is this person who they claim to be (for example, a check with a national ID service)?"""

    async def verify_card(self, identity: IdentityClaim, card: CardClaim) -> Verification:
        """Is this card, at another bank, held by this person (for example, a card-network check)?"""


def id_number_valid(number: str) -> bool:
    """An 18-character resident identity number with its ISO 7064 MOD 11-2 check character."""
    if ID_NUMBER_RE.fullmatch(number) is None:
        return False
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(number[:17], weights, strict=True))
    return "10X98765432"[total % 11] == number[17]


def luhn_valid(number: str) -> bool:
    if PAN_RE.fullmatch(number) is None:
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


class SandboxVerifier:
    """Accepts well-formed test data, for development and tests; never for production.

    Identity: an ID number with a valid check character. Card: a Luhn-valid number from
    another bank; a number ending in ``0002`` is declined, as card networks' test cards do.
    """

    async def verify_identity(self, claim: IdentityClaim) -> Verification:
        if not id_number_valid(claim.id_number):
            return Verification(False, reason="the identity could not be verified")
        ref = "sandbox-id-" + hashlib.sha256(claim.id_number.encode()).hexdigest()[:12]
        return Verification(True, ref)

    async def verify_card(self, identity: IdentityClaim, card: CardClaim) -> Verification:
        if not luhn_valid(card.number) or card.number.endswith("0002"):
            return Verification(False, reason="the card could not be bound")
        ref = "sandbox-card-" + hashlib.sha256(card.number.encode()).hexdigest()[:12]
        return Verification(True, ref)


def _plugin(group: str, name: str, settings: Settings) -> Any:
    found = [ep for ep in entry_points(group=group) if ep.name == name]
    if not found:
        raise ConfigurationError(f"no plug-in named {name!r} in entry-point group {group}")
    return found[0].load()(settings)


def make_sms_provider(settings: Settings) -> SmsProvider:
    name = settings.banking_sms_provider
    if name == "console":
        return ConsoleSms()
    if name == "memory":
        return MemorySms()
    provider: SmsProvider = _plugin("mpaas.sms_providers", name, settings)
    return provider


def make_verifier(settings: Settings) -> IdentityVerifier:
    name = settings.banking_identity_verifier
    if name == "sandbox":
        return SandboxVerifier()
    verifier: IdentityVerifier = _plugin("mpaas.identity_verifiers", name, settings)
    return verifier
