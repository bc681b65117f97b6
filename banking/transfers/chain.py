"""A new transfer's whole transaction on PostgreSQL as one statement: one round trip (ADR 0019).

The statement is a chain of data-modifying CTEs, each reading the one before it, so they run
in the ORM path's order and take their locks in it (the limit rows day then year, the
transfer id, the accounts in id order)::

    lim  the day's and year's usage (one INSERT .. ON CONFLICT DO UPDATE .. WHERE within limit)
    t    the ledger transfer, when every limit row took the amount (ON CONFLICT DO NOTHING)
    lo   the account with the lower id: its conditional UPDATE, when ``t`` made a row
    hi   the other account, when ``lo`` changed its row
    p    the two postings (a posted transfer), when ``hi`` changed its row
    r    the request row, when ``hi`` changed its row (a racer's key stops it: unique violation)

The final SELECT names the first step that changed no row. A statement runs as its own
transaction in autocommit, and an error undoes all of it: when a step refused, the SELECT
casts ``'mpaas:<step>'`` to an integer, PostgreSQL raises ``invalid input syntax``, and
nothing of the chain is kept. :func:`refused_step` reads the step back from that error.
Each UPDATE keeps its ``WHERE`` condition, so a waiting UPDATE re-checks it on the
committed row, exactly as the ORM path's statements do.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import BigInteger, BindParameter, Integer, String, Table, bindparam, text
from sqlalchemy.engine import Dialect

from mpaas.banking.ledger.models import BankTransferRequest, LedgerTransfer
from mpaas.banking.risk.models import RiskDecision
from mpaas.banking.risk.store import RECORD_COLUMNS
from mpaas.storage.compiled import Compiled

# the SQLSTATE (22P02) is checked by the caller; the value is found in any server language
_REFUSED = re.compile(r"mpaas:([a-z]+(?::[a-z]+)?)")

DEBIT_OK = "no_negative IS false OR credits_posted - debits_posted - debits_pending >= :amount"
CREDIT_OK = "balance_cap IS NULL OR credits_posted + credits_pending - debits_posted + :amount <= balance_cap"

LIMITS = """lim AS (
  INSERT INTO bank_limit_usage (account_id, period, used)
  SELECT :debit, p.period, :amount
  FROM (VALUES (:day, CAST(:day_limit AS BIGINT)), (:year, CAST(:year_limit AS BIGINT))) AS p (period, cap)
  WHERE p.cap IS NOT NULL
  ON CONFLICT (account_id, period) DO UPDATE SET used = bank_limit_usage.used + excluded.used
  WHERE bank_limit_usage.used + excluded.used <= CASE WHEN excluded.period = :day
    THEN CAST(:day_limit AS BIGINT) ELSE CAST(:year_limit AS BIGINT) END
  RETURNING period)"""

STATUS = """SELECT CASE WHEN x.status = 'ok' THEN x.id ELSE CAST('mpaas:' || x.status AS INTEGER) END
FROM (SELECT (SELECT id FROM t) AS id, CASE
  WHEN (SELECT count(*) FROM lim) < :n_limits THEN CASE
    WHEN CAST(:day_limit AS BIGINT) IS NOT NULL AND NOT EXISTS (SELECT 1 FROM lim WHERE period = :day)
    THEN 'limit:daily' ELSE 'limit:yearly' END
  WHEN NOT EXISTS (SELECT 1 FROM t) THEN 'exists'
  WHEN NOT EXISTS (SELECT 1 FROM lo) THEN 'leg:lo'
  WHEN NOT EXISTS (SELECT 1 FROM hi) THEN 'leg:hi'
  ELSE 'ok' END AS status) AS x"""


def _columns(table: str, model: type, prefix: str) -> tuple[list[str], str, str]:
    names = [c.name for c in model.__table__.c if c.name != "id"]  # type: ignore[attr-defined]
    return names, f"{table} ({', '.join(names)})", ", ".join(f":{prefix}{n}" for n in names)


def chain_sql(pending: bool, debit_lower: bool, decision: bool = False) -> str:
    """``decision``: the risk decision's record is inserted too (``d``), so an allowed transfer
    and its decision commit together (a refused chain keeps neither; the caller stores the
    decision alone then)."""
    side = "pending" if pending else "posted"
    order = [("debits", ":debit", DEBIT_OK), ("credits", ":credit", CREDIT_OK)]
    if not debit_lower:
        order.reverse()
    ctes = [LIMITS]
    _, into, values = _columns("ledger_transfers", LedgerTransfer, "t_")
    ctes.append(
        f"t AS (INSERT INTO {into} SELECT {values} WHERE (SELECT count(*) FROM lim) = :n_limits "
        "ON CONFLICT DO NOTHING RETURNING id)"
    )
    for name, after, (which, account, ok) in zip(("lo", "hi"), ("t", "lo"), order, strict=True):
        column = f"{which}_{side}"
        ctes.append(
            f"{name} AS (UPDATE ledger_accounts SET {column} = {column} + :amount "
            f"WHERE id = {account} AND currency = :currency AND ({ok}) "
            f"AND EXISTS (SELECT 1 FROM {after}) RETURNING id)"
        )
    if not pending:
        ctes.append(
            "p AS (INSERT INTO ledger_postings (transfer_pk, account_id, amount, posted_at) "
            "SELECT t.id, v.account_id, v.amount, :t_created_at FROM t, hi, "
            "(VALUES (1, :debit, -CAST(:amount AS BIGINT)), (2, :credit, CAST(:amount AS BIGINT))) "
            "AS v (n, account_id, amount) ORDER BY v.n RETURNING id)"
        )
    _, into, values = _columns("bank_transfer_requests", BankTransferRequest, "r_")
    ctes.append(f"r AS (INSERT INTO {into} SELECT {values} FROM hi RETURNING id)")
    if decision:
        names = ", ".join(RECORD_COLUMNS)
        values = ", ".join(f":d_{c}" for c in RECORD_COLUMNS)
        ctes.append(f"d AS (INSERT INTO risk_decisions ({names}) VALUES ({values}) RETURNING id)")
    return "WITH " + ",\n".join(ctes) + "\n" + STATUS


def compile_chain(dialect: Dialect, pending: bool, debit_lower: bool, decision: bool = False) -> Compiled:
    """The chain for one shape (pending or posted, which leg has the lower account id, with
    or without the decision's record)."""
    binds: list[BindParameter[Any]] = [
        bindparam("debit", type_=Integer),
        bindparam("credit", type_=Integer),
        bindparam("amount", type_=BigInteger),
        bindparam("currency", type_=String),
        bindparam("day", type_=String),
        bindparam("year", type_=String),
        bindparam("day_limit", type_=BigInteger),
        bindparam("year_limit", type_=BigInteger),
        bindparam("n_limits", type_=Integer),
    ]
    tables: list[tuple[Table, str]] = [
        (LedgerTransfer.__table__, "t_"),  # type: ignore[attr-defined]
        (BankTransferRequest.__table__, "r_"),  # type: ignore[attr-defined]
    ]
    for table, prefix in tables:
        for column in table.c:
            if column.name != "id":
                binds.append(bindparam(prefix + column.name, type_=column.type))
    if decision:
        decisions = RiskDecision.__table__  # type: ignore[attr-defined]
        binds += [bindparam("d_" + c, type_=decisions.c[c].type) for c in RECORD_COLUMNS]
    stmt = text(chain_sql(pending, debit_lower, decision)).bindparams(*binds)
    return Compiled(stmt, dialect)


def refused_step(message: str) -> str | None:
    """The step named by the chain's deliberate error (``limit:daily``, ``exists``, ``leg:lo``...)."""
    found = _REFUSED.search(message)
    return found.group(1) if found else None
