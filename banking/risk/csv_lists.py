"""CSV import of list entries, all or nothing: every line is checked first, and a file with
any bad line is refused with each bad line named; a good file is added in one transaction.

Columns (a header line is required): ``kind,entity,value,reason,expires_at``; ``reason`` and
``expires_at`` (ISO 8601) may be empty.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

from sqlmodel import select

import mpaas.banking.epochs as epochs
from mpaas.banking.risk.errors import InvalidListEntry
from mpaas.banking.risk.models import RiskListEntry
from mpaas.banking.risk.store import EPOCH, LIST_ENTITIES, LIST_KINDS
from mpaas.identity import audit
from mpaas.identity.audit import Actor
from mpaas.storage.db import Database

COLUMNS = ("kind", "entity", "value", "reason", "expires_at")
MAX_LINES = 100_000
MAX_ERRORS = 20
VALUE_RE = r"[\x21-\x7e]{1,128}"


def parse_csv(text: str) -> list[tuple[int, RiskListEntry]]:
    """The entries of a CSV text, or :class:`InvalidListEntry` naming every bad line (up to 20)."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header] not in (list(COLUMNS), list(COLUMNS[:3])):
        raise InvalidListEntry(f"line 1: the header must be {','.join(COLUMNS)}")
    errors: list[str] = []
    rows: list[tuple[int, RiskListEntry]] = []
    seen: dict[tuple[str, str, str], int] = {}
    for cells in reader:
        line = reader.line_num
        if line > MAX_LINES + 1:
            raise InvalidListEntry(f"a list import holds at most {MAX_LINES} lines")
        if not cells or all(not c.strip() for c in cells):
            continue
        problem, entry = _entry(cells)
        if entry is not None:
            key = (entry.kind, entry.entity, entry.value)
            if key in seen:
                problem, entry = f"repeats line {seen[key]}", None
            else:
                seen[key] = line
        if problem is not None:
            errors.append(f"line {line}: {problem}")
        elif entry is not None:
            rows.append((line, entry))
    if errors:
        more = f" (and {len(errors) - MAX_ERRORS} more)" if len(errors) > MAX_ERRORS else ""
        raise InvalidListEntry("nothing imported; " + "; ".join(errors[:MAX_ERRORS]) + more)
    if not rows:
        raise InvalidListEntry("nothing imported: the file has no entries")
    return rows


def _entry(cells: list[str]) -> tuple[str | None, RiskListEntry | None]:
    if len(cells) not in (3, 4, 5):
        return f"expected {len(COLUMNS)} columns, found {len(cells)}", None
    kind, entity, value, reason, expires = (c.strip() for c in [*cells, "", ""][:5])
    if kind not in LIST_KINDS:
        return f"kind {kind!r} must be one of {', '.join(LIST_KINDS)}", None
    if entity not in LIST_ENTITIES:
        return f"entity {entity!r} must be one of {', '.join(LIST_ENTITIES)}", None
    if re.fullmatch(VALUE_RE, value) is None:
        return "value must be 1 to 128 printable ASCII characters without spaces", None
    if len(reason) > 256:
        return "reason must be at most 256 characters", None
    expires_at = None
    if expires:
        try:
            expires_at = datetime.fromisoformat(expires)
        except ValueError:
            return f"expires_at {expires!r} is not an ISO 8601 time", None
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
    return None, RiskListEntry(
        kind=kind, entity=entity, value=value, reason=reason, expires_at=expires_at, created_by=""
    )


async def import_csv(db: Database, actor: Actor, text: str) -> int:
    """Add every entry of ``text`` in one transaction; an entry already listed refuses the file."""
    rows = parse_csv(text)
    async with db.write() as s:
        existing = {(e.kind, e.entity, e.value) for e in (await s.exec(select(RiskListEntry))).all()}
        clashes = [
            f"line {line}: {r.value!r} is already on the {r.kind} list of {r.entity}s"
            for line, r in rows
            if (r.kind, r.entity, r.value) in existing
        ]
        if clashes:
            raise InvalidListEntry(
                "nothing imported; " + "; ".join(clashes[:MAX_ERRORS]), status=409, code="list_entry_exists"
            )
        for _line, row in rows:
            row.created_by = actor.name
            s.add(row)
        audit.record(s, actor, "risk.list.import", f"{len(rows)} entries", detail={"entries": len(rows)})
        await epochs.bump(s, EPOCH)
    return len(rows)
