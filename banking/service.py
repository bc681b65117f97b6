"""The banking domain's services in one object, held by the app under :data:`BANKING`."""

from __future__ import annotations

import time
from dataclasses import dataclass

from aiohttp import web

from mpaas.banking.catalog.service import CatalogService
from mpaas.banking.operations.registry import OperationRegistry
from mpaas.banking.operations.upstream import Upstreams
from mpaas.banking.transfers.service import TransferService
from mpaas.banking.users.codes import OneTimeCodes
from mpaas.banking.users.providers import IdentityVerifier, SmsProvider
from mpaas.banking.users.service import UserService
from mpaas.banking.users.sessions import SessionStore


class Clock:
    """Unix seconds; tests pin it (``fixed``) to drive expiry and the circuit breakers."""

    def __init__(self) -> None:
        self.fixed: float | None = None

    def __call__(self) -> float:
        return time.time() if self.fixed is None else self.fixed


@dataclass
class Banking:
    clock: Clock
    sms: SmsProvider
    verifier: IdentityVerifier
    sessions: SessionStore
    codes: OneTimeCodes
    users: UserService
    upstreams: Upstreams
    registry: OperationRegistry
    catalog: CatalogService
    #: Set at start-up once the ledger's accounts exist.
    transfers: TransferService | None = None


BANKING = web.AppKey("banking", Banking)
