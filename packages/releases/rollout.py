"""Gray rollout: deterministic buckets, whitelists and targeting rules.

A device falls in bucket ``fmix64(D XOR R) mod 10,000``, where ``D`` is
``fmix64(FNV-1a-64(device id as UTF-8))``, ``R`` the first 8 bytes of
``sha256("mpaas-rollout:{seed}")`` (big-endian) and ``fmix64`` MurmurHash3's 64-bit
finaliser (:mod:`mpaas.packages.releases.check_kernel`; ADR 0007). A release at ``p`` basis points
reaches buckets ``0 … p-1``. Raising 10 % to 20 % therefore keeps every device of the
first 10 %, and the seed (the release id, or the id of the release a rollback restores)
makes each release pick an independent sample. A check hashes the device id once,
however many releases it meets.

Rules are short texts, all of which must hold (AND)::

    os=ios            os!=android        model=Pixel 8,Pixel 8 Pro    region=CN,HK
    os_version>=14    app_version>=5.2 <6    app_version=5.x         tier=gold,platinum
    tag=beta          (the device's user carries the tag "beta"; several: any of them)

``=`` / ``!=`` on os, model, region, tag and tier test membership in a comma list
(case-insensitive for os, region and tier). On os_version and app_version the text
after the field name is a semver range (``>=5.2 <6``, ``^5.2``, ``5.x``), and ``!=``
negates it. A device that does not send an attribute fails every rule on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from mpaas.errors import ValidationError
from mpaas.packages.releases.check_kernel import Device, Gate, Probe, bucket, cached_version, seed_key
from mpaas.packages.semver import InvalidVersion, Range

__all__ = ["Device", "Rule", "Targeting", "bucket", "cached_version", "parse_rule", "parse_rules"]

SET_FIELDS = ("os", "model", "region", "tag", "tier")
VERSION_FIELDS = ("os_version", "app_version")
_FOLDED = ("os", "region", "tier")
_RULE_RE = re.compile(
    r"^\s*(os_version|app_version|os|model|region|tag|tier)\s*(!=|=|>=|<=|>|<|\^|~)\s*(.*?)\s*$"
)
MAX_RULES = 20
MAX_WHITELIST = 10_000


class InvalidRule(ValidationError):
    code = "invalid_rule"


def percent_to_bp(percent: float) -> int:
    if not 0 <= percent <= 100:
        raise ValidationError(f"rollout must be between 0 and 100 percent, not {percent}")
    return round(percent * 100)


@dataclass(frozen=True)
class Rule:
    field: str
    negate: bool
    values: frozenset[str] = frozenset()
    range: Range | None = None
    text: str = ""

    def test(self, d: Device) -> bool:
        if self.range is not None:
            version = d.os_version if self.field == "os_version" else d.app_version
            if version is None:
                return False
            return self.range.contains(version) != self.negate
        if self.field == "tag":
            if not d.tags:
                return False
            return bool(self.values & d.tags) != self.negate
        value = getattr(d, self.field)
        if value is None:
            return False
        if self.field in _FOLDED:
            value = value.lower()
        return (value in self.values) != self.negate


def parse_rule(text: str) -> Rule:
    m = _RULE_RE.fullmatch(text)
    if not m:
        raise InvalidRule(
            f"rule {text!r} must look like 'os=ios', 'app_version>=5.2 <6' or 'tag=beta' "
            f"(fields: {', '.join(SET_FIELDS + VERSION_FIELDS)})"
        )
    name, op, value = m.groups()
    if not value:
        raise InvalidRule(f"rule {text!r} has no value")
    if name in VERSION_FIELDS:
        negate = op == "!="
        spec = value if op in ("=", "!=") else op + value
        try:
            return Rule(name, negate, range=Range.parse(spec), text=text.strip())
        except InvalidVersion as exc:
            raise InvalidRule(f"rule {text!r}: {exc.message}") from None
    if op not in ("=", "!="):
        raise InvalidRule(f"rule {text!r}: {name} takes '=' or '!=' with a comma-separated list")
    values = [v.strip() for v in value.split(",") if v.strip()]
    if name in _FOLDED:
        values = [v.lower() for v in values]
    return Rule(name, op == "!=", frozenset(values), text=text.strip())


def parse_rules(texts: Iterable[str]) -> tuple[Rule, ...]:
    rules = tuple(parse_rule(t) for t in texts)
    if len(rules) > MAX_RULES:
        raise InvalidRule(f"at most {MAX_RULES} rules per release")
    return rules


def check_whitelist(data: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """Normalise ``{"device_ids": [...], "user_ids": [...]}``."""
    out: dict[str, list[str]] = {"device_ids": [], "user_ids": []}
    for key in out:
        items = (data or {}).get(key) or []
        if not isinstance(items, list) or not all(isinstance(i, str) and 0 < len(i) <= 128 for i in items):
            raise ValidationError(f"whitelist {key} must be a list of ids (1-128 characters each)")
        out[key] = sorted(set(items))
    if sum(len(v) for v in out.values()) > MAX_WHITELIST:
        raise ValidationError(f"a whitelist holds at most {MAX_WHITELIST} ids")
    return out


@dataclass(frozen=True)
class Targeting:
    """A release's audience, as stored: compiled to a :class:`Gate` when the index is built."""

    seed: int
    rollout_bp: int
    rules: tuple[Rule, ...] = ()
    device_ids: frozenset[str] = field(default_factory=frozenset)
    user_ids: frozenset[str] = field(default_factory=frozenset)

    def gate(self, starts_at: float = 0.0) -> Gate:
        return Gate(
            self.rollout_bp, seed_key(self.seed), starts_at, self.rules, self.device_ids, self.user_ids
        )

    @cached_property
    def _started(self) -> Gate:
        return self.gate()

    def admits(self, d: Device) -> bool:
        """Whitelisted, or passing every rule and inside the rollout percentage."""
        return self._started.admits(Probe(d), 0.0)
