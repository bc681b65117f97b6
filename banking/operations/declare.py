"""Declaring an operation: name, version, input/output models, tier, session, rate, idempotency."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from mpaas.banking.errors import InvalidOperation
from mpaas.banking.users.tiers import VISITOR, level_of
from mpaas.gateway.admission import Rate
from mpaas.gateway.operation import Handler, OperationSpec
from mpaas.gateway.signing import OPERATION_RE


@dataclass(frozen=True)
class Declared:
    name: str
    version: int
    input: type[BaseModel]
    handler: Handler
    output: type[BaseModel] | None = None
    min_tier: str = "registered"
    session_required: bool = True
    rate: Rate | None = None
    idempotent: bool = False
    summary: str = ""

    def spec(self, kind: str = "in-process") -> OperationSpec:
        return OperationSpec(
            name=self.name,
            version=self.version,
            input=self.input,
            handler=self.handler,
            output=self.output,
            min_level=level_of(self.min_tier),
            min_tier=self.min_tier,
            session_required=self.session_required,
            rate=self.rate,
            idempotent=self.idempotent,
            kind=kind,
            summary=self.summary,
        )


def check_name(name: str) -> str:
    if OPERATION_RE.fullmatch(name) is None:
        raise InvalidOperation(
            f"operation name {name!r} must be 2-8 dot-separated lowercase words, "
            "such as com.bank.transfer.create"
        )
    return name


def check_version(version: int) -> int:
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= 9999:
        raise InvalidOperation("an operation version is an integer from 1 to 9999")
    return version


def parse_rate(rate: str | None) -> Rate | None:
    if rate is None:
        return None
    try:
        return Rate.parse(rate)
    except ValueError as exc:
        raise InvalidOperation(str(exc)) from None


def operation(
    name: str,
    *,
    version: int = 1,
    input: type[BaseModel],
    output: type[BaseModel] | None = None,
    min_tier: str = "registered",
    session: bool = True,
    rate: str | None = None,
    idempotent: bool = False,
    summary: str = "",
) -> Callable[[Handler], Declared]:
    """Decorate ``async def handler(call, params)``; the result is what the registry takes.

    ``min_tier`` ``visitor`` with ``session=False`` opens the operation to any signed
    device; ``rate`` (``10/m``) is a token bucket per caller and operation.
    """
    check_name(name)
    check_version(version)
    level_of(min_tier)
    if min_tier != VISITOR and not session:
        raise InvalidOperation(f"{name}: an operation for tier {min_tier} needs a session")
    parsed = parse_rate(rate)

    def decorate(handler: Handler) -> Declared:
        doc = (handler.__doc__ or "").strip().splitlines()
        return Declared(
            name,
            version,
            input,
            handler,
            output,
            min_tier,
            session,
            parsed,
            idempotent,
            summary or (doc[0] if doc else ""),
        )

    return decorate
