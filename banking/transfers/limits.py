"""Limits by account class: configuration, counted per bank-calendar day and year.

The defaults are the PBOC rules (docs/banking.md, "Limits"): Class II accounts may send
10,000 yuan a day and 200,000 yuan a year to accounts that are not bound to them;
Class III accounts hold at most 2,000 yuan and send 2,000 yuan a day and 50,000 a year.
``MPAAS_BANKING_LIMITS_FILE`` (YAML or JSON, amounts in fen) replaces them::

    classes:
      II:  {day_out_fen: 1000000, year_out_fen: 20000000, bound_exempt: true}
      III: {day_out_fen: 200000, year_out_fen: 5000000, balance_cap_fen: 200000}

Usage is one row per account and period (``2026-12-03``, ``2026``). Taking an amount is an
UPDATE whose condition is the limit (``used + :amount <= :limit``) in the transfer's own
transaction, so concurrent transfers cannot overshoot it; a void gives the amount back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from sqlalchemy import CursorResult, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from mpaas.banking.ledger.errors import LimitExceeded
from mpaas.banking.ledger.models import BankLimitUsage
from mpaas.banking.ledger.service import upsert_insert
from mpaas.errors import ConfigError

CLASS_RE = re.compile(r"I{1,3}")
KEYS = {"day_out_fen", "year_out_fen", "balance_cap_fen", "bound_exempt"}
U = BankLimitUsage


@dataclass(frozen=True)
class ClassLimits:
    day_out: int | None = None
    year_out: int | None = None
    balance_cap: int | None = None
    #: Class II: transfers to the holder's own bound account do not count.
    bound_exempt: bool = False


DEFAULT_CLASSES = {
    "I": ClassLimits(),
    "II": ClassLimits(day_out=1_000_000, year_out=20_000_000, bound_exempt=True),
    "III": ClassLimits(day_out=200_000, year_out=5_000_000, balance_cap=200_000),
}


@dataclass(frozen=True)
class Periods:
    day: str
    year: str


@dataclass(frozen=True)
class Limits:
    classes: dict[str, ClassLimits] = field(default_factory=lambda: dict(DEFAULT_CLASSES))
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))

    def of(self, account_class: str | None) -> ClassLimits:
        return self.classes.get(account_class or "", ClassLimits())

    def periods(self, unix: float) -> Periods:
        """The bank-calendar day and year of an instant (Asia/Shanghai: UTC+8 all year)."""
        local = datetime.fromtimestamp(unix, UTC).astimezone(self.timezone)
        return Periods(local.strftime("%Y-%m-%d"), local.strftime("%Y"))

    def counts(self, account_class: str | None, to_bound_account: bool) -> bool:
        rule = self.of(account_class)
        if rule.day_out is None and rule.year_out is None:
            return False
        return not (rule.bound_exempt and to_bound_account)

    def rules(self, account_class: str | None, when: Periods) -> list[tuple[str, int, str]]:
        """The periods an amount of this class counts against: (period, limit, name), day first."""
        rule = self.of(account_class)
        pairs = ((when.day, rule.day_out, "daily"), (when.year, rule.year_out, "yearly"))
        return [(period, limit, name) for period, limit, name in pairs if limit is not None]

    def refusal(self, account_class: str | None, limit: int, name: str) -> LimitExceeded:
        return LimitExceeded(
            f"this transfer would exceed the {name} limit of {limit / 100:.2f} yuan "
            f"for a Class {account_class} account",
            detail={"period": name, "limit_fen": limit},
        )

    async def take(
        self, s: AsyncSession, account_id: int, account_class: str | None, amount: int, when: Periods
    ) -> None:
        """Count ``amount`` against the day's and the year's limit, or raise without counting."""
        for period, limit, name in self.rules(account_class, when):
            stmt = _count(s, account_id, period, amount, limit) if amount <= limit else None
            if stmt is None or await _rowcount(s, stmt) != 1:
                raise self.refusal(account_class, limit, name)

    async def give_back(self, s: AsyncSession, account_id: int, amount: int, periods: Sequence[str]) -> None:
        for period in periods:
            stmt = (
                update(U)
                .where(col(U.account_id) == account_id, col(U.period) == period)
                .values(used=col(U.used) - amount)
            )
            await _rowcount(s, stmt)


def _count(s: AsyncSession, account_id: int, period: str, amount: int, limit: int) -> Any:
    """One statement: open the period's row with ``amount``, or add ``amount`` to it while the
    sum stays within ``limit`` (no row changes when it would not: rowcount 0)."""
    insert = upsert_insert(s)(U).values(account_id=account_id, period=period, used=amount)
    return insert.on_conflict_do_update(
        index_elements=[col(U.account_id), col(U.period)],
        set_={"used": col(U.used) + insert.excluded.used},
        where=col(U.used) + insert.excluded.used <= limit,
    )


async def _rowcount(s: AsyncSession, stmt: Any) -> int:
    result = await (await s.connection()).execute(stmt)
    assert isinstance(result, CursorResult)
    return result.rowcount


def _fen(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"banking limits: {name} must be a whole number of fen (0 or more), got {value!r}")
    return value


def parse_limits(data: Any, timezone: str) -> Limits:
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"MPAAS_BANKING_TIMEZONE={timezone!r} is not a known time zone") from None
    if data is None:
        return Limits(dict(DEFAULT_CLASSES), zone)
    if not isinstance(data, dict) or not isinstance(data.get("classes"), dict):
        raise ConfigError("banking limits: the file must be a mapping with a 'classes' mapping")
    classes: dict[str, ClassLimits] = {"I": ClassLimits()}
    for name, rule in data["classes"].items():
        if not isinstance(name, str) or CLASS_RE.fullmatch(name) is None or not isinstance(rule, dict):
            raise ConfigError(f"banking limits: class {name!r} must be I, II or III with a mapping of limits")
        unknown = set(rule) - KEYS
        if unknown:
            raise ConfigError(f"banking limits: class {name}: unknown keys {sorted(unknown)}")
        exempt = rule.get("bound_exempt", False)
        if not isinstance(exempt, bool):
            raise ConfigError(f"banking limits: class {name}: bound_exempt must be true or false")
        classes[name] = ClassLimits(
            _fen(f"{name}.day_out_fen", rule.get("day_out_fen")),
            _fen(f"{name}.year_out_fen", rule.get("year_out_fen")),
            _fen(f"{name}.balance_cap_fen", rule.get("balance_cap_fen")),
            exempt,
        )
    return Limits(classes, zone)


def load_limits(path: str | None, timezone: str) -> Limits:
    """The limits of ``MPAAS_BANKING_LIMITS_FILE``, or the defaults; a bad file is a ConfigError."""
    if not path:
        return parse_limits(None, timezone)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"MPAAS_BANKING_LIMITS_FILE={path}: cannot be read ({type(exc).__name__})"
        ) from None
    return parse_limits(data, timezone)
