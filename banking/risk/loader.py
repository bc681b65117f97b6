"""What an engine holds in memory between two moves of the ``risk`` epoch: each scene's
compiled active rule set, each scene's shadow, the lists, and the snoozes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_
from sqlmodel import col, select

from mpaas.banking.risk.features import ListIndex
from mpaas.banking.risk.models import RiskRuleSet, RiskShadow, RiskSnooze
from mpaas.banking.risk.rules import CompiledRuleSet, compile_ruleset, parse_document
from mpaas.banking.risk.scenes import fail_mode
from mpaas.banking.risk.store import Lists, RuleSets, label
from mpaas.storage.db import Database, as_stored_utc


class SnoozeIndex:
    """(scene, entity, value) → the rules snoozed for it, with their expiry."""

    def __init__(self, rows: list[tuple[str, str, str, str, datetime]] | None = None) -> None:
        self._by: dict[tuple[str, str, str], list[tuple[str, datetime]]] = {}
        for scene, rule, entity, value, expires_at in rows or ():
            self._by.setdefault((scene, entity, value), []).append((rule, expires_at))

    def rules(self, scene: str, entities: Mapping[str, str], now: datetime) -> list[str]:
        if not self._by:
            return []
        out = {
            rule
            for entity, value in entities.items()
            for rule, expires_at in self._by.get((scene, entity, value), ())
            if expires_at > now
        }
        return sorted(out)


@dataclass(frozen=True)
class Loaded:
    compiled: dict[str, CompiledRuleSet | None] = field(default_factory=dict)
    shadows: dict[str, CompiledRuleSet] = field(default_factory=dict)
    lists: ListIndex = field(default_factory=ListIndex)
    snoozes: SnoozeIndex = field(default_factory=SnoozeIndex)


def compile_row(row: RiskRuleSet) -> CompiledRuleSet:
    return compile_ruleset(
        label(row.scene, row.version), parse_document(row.document), fail_mode=fail_mode(row.scene)
    )


async def load_state(db: Database, previous: Loaded, also: str | None = None) -> Loaded:
    scenes = list(previous.compiled) + ([also] if also is not None and also not in previous.compiled else [])
    rulesets = RuleSets(db)
    compiled: dict[str, CompiledRuleSet | None] = {}
    for scene in scenes:
        active = await rulesets.active(scene)
        current = previous.compiled.get(scene)
        if active is None:
            compiled[scene] = None
        elif current is not None and current.version == active.version:
            compiled[scene] = current
        else:  # off the event loop: a large rule set takes a while to compile and translate
            compiled[scene] = await asyncio.to_thread(
                compile_ruleset, active.version, active.doc, fail_mode=fail_mode(scene)
            )
    async with db.session() as s:
        shadow_rows = (
            await s.exec(
                select(RiskShadow, RiskRuleSet).join(
                    RiskRuleSet,
                    and_(
                        col(RiskRuleSet.scene) == col(RiskShadow.scene),
                        col(RiskRuleSet.version) == col(RiskShadow.version),
                    ),
                )
            )
        ).all()
        snooze_rows = (await s.exec(select(RiskSnooze))).all()
    shadows: dict[str, CompiledRuleSet] = {}
    for shadow, row in shadow_rows:
        current = previous.shadows.get(shadow.scene)
        wanted = label(row.scene, row.version)
        if current is not None and current.version == wanted:
            shadows[shadow.scene] = current
        else:
            shadows[shadow.scene] = await asyncio.to_thread(compile_row, row)
    entries = await Lists(db).all()
    lists = ListIndex(
        [(e.kind, e.entity, e.value, e.expires_at and as_stored_utc(e.expires_at)) for e in entries]
    )
    snoozes = SnoozeIndex(
        [(r.scene, r.rule, r.entity, r.value, as_stored_utc(r.expires_at)) for r in snooze_rows]
    )
    return Loaded(compiled, shadows, lists, snoozes)
