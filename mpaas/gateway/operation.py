"""What the gateway dispatches to: operation specs, the caller, and the Protocols a domain fills.

The gateway is generic. A domain (``mpaas.banking``) supplies an :class:`OperationSource`
(its registry), a :class:`SessionResolver` (its sessions and user tiers, as levels) and,
optionally, a :class:`RiskCheck`; ``mpaas.app`` plugs them into the gateway at start-up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from mpaas.gateway.admission import Rate


@dataclass(frozen=True)
class Principal:
    """The caller behind a session: ``level`` orders tiers (0 = a device only)."""

    session_id: str
    level: int
    tier: str
    user_id: str | None = None
    #: The device key the session is bound to (its kid), if any.
    device_kid: str | None = None
    #: The session store's own record of the user, read with the session on this call (the
    #: banking user), so that handlers need not read it again; never kept across calls.
    user: Any = field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class Call:
    """One admitted gateway call, as a handler sees it; read-only by convention (a slotted
    record: a frozen dataclass costs about eight times as much to make, on every call)."""

    app: str
    device: str
    operation: str
    version: int
    nonce: str
    request_id: str
    #: The kid of the device key the request was signed with; None when signed with the app key.
    device_kid: str | None
    principal: Principal | None
    #: Validated JSON of the body (the same data as the handler's input model).
    raw: Mapping[str, Any] = field(default_factory=dict)


Output = BaseModel | Mapping[str, Any]
Handler = Callable[[Call, Any], Awaitable[Output]]


@dataclass(frozen=True)
class OperationSpec:
    """A callable operation. ``min_level`` 0 with ``session_required`` False is open to any device."""

    name: str
    version: int
    input: type[BaseModel]
    handler: Handler
    output: type[BaseModel] | None = None
    min_level: int = 0
    min_tier: str = ""
    session_required: bool = True
    rate: Rate | None = None
    idempotent: bool = False
    kind: str = "in-process"
    summary: str = ""
    enabled: bool = True


class OperationSource(Protocol):
    def get(self, name: str, version: int) -> OperationSpec | None:
        """The operation, or None when no such (name, version) exists."""


class SessionResolver(Protocol):
    async def resolve(self, app: str, device: str, token: str, device_kid: str | None) -> Principal | None:
        """The session's principal, or None when the token is unknown, expired, revoked,
        issued to another device, or bound to a key the request was not signed with."""


class RiskCheck(Protocol):
    async def check(self, call: Call, spec: OperationSpec, params: BaseModel) -> None:
        """Raise ``GatewayError(RISK_CHALLENGE, detail=...)`` to ask for a challenge."""


class NoOperations:
    def get(self, name: str, version: int) -> OperationSpec | None:
        return None
