"""Start-up of transfers: the ledger's bank accounts, limits, the clearing system, the sweep."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from mpaas.banking.ledger.service import Ledger
from mpaas.banking.risk.engine import CelRiskEngine
from mpaas.banking.risk.scenes import SCENES
from mpaas.banking.risk.wiring import make_risk_engine
from mpaas.banking.transfers.accounts import CURRENCY, Accounts
from mpaas.banking.transfers.clearing_standin import ClearingStandIn
from mpaas.banking.transfers.limits import load_limits
from mpaas.banking.transfers.service import TransferService
from mpaas.banking.users.codes import OneTimeCodes
from mpaas.errors import ConfigError
from mpaas.settings import Settings
from mpaas.storage.db import Database

log = logging.getLogger("mpaas.banking.transfers")


async def make_transfers(
    settings: Settings,
    db: Database,
    codes: OneTimeCodes,
    clock: Callable[[], float],
    registry: CollectorRegistry | None = None,
) -> TransferService:
    """The transfers service with the configured limits; the clearing system is the stand-in
    (accepting every order) until a bank plugs in its own."""
    if settings.banking_e_account_class not in ("II", "III"):
        raise ConfigError(
            f"MPAAS_BANKING_E_ACCOUNT_CLASS={settings.banking_e_account_class!r} must be II or III"
        )
    limits = load_limits(settings.banking_limits_file, settings.banking_timezone)
    ledger = Ledger()
    async with db.write() as s:
        await ledger.ensure_bank_accounts(s, CURRENCY)
    accounts = Accounts(db, ledger, limits, settings.banking_e_account_class)
    clearing = ClearingStandIn()
    risk = make_risk_engine(settings, db, registry=registry)
    if isinstance(risk, CelRiskEngine):
        await risk.warm(SCENES)  # rule sets and models loaded before the first call needs them
    service = TransferService(
        db,
        ledger,
        accounts,
        limits,
        risk,
        codes,
        clearing,
        clock,
        settings.banking_clearing_timeout_seconds,
    )
    clearing.connect(service.on_clearing_answer)
    return service


async def sweep_forever(service: TransferService, interval: float) -> None:
    """Void, in every process, the inter-bank transfers whose clearing answer never came."""
    while True:
        await asyncio.sleep(interval)
        try:
            voided = await service.sweep()
            if voided:
                log.info("pending transfers voided after the clearing timeout", extra={"voided": voided})
        except Exception:
            log.exception("transfer sweep failed")
