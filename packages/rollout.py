"""Gray rollout: deterministic buckets, whitelists and targeting rules.

A device falls in bucket ``sha256("{seed}:{device id}") mod 10,000`` (the digest's
first 8 bytes as a big-endian integer); a release at ``p`` basis points reaches
buckets ``0 … p-1``. Raising 10 % to 20 % therefore keeps every device of the first
10 %, and the seed (the release id, or the id of the release a rollback restores)
makes each release pick an independent sample.

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

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mpaas.errors import ValidationError
from mpaas.packages.release_models import BUCKETS
from mpaas.packages.semver import InvalidVersion, Range, Version

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


def bucket(device_id: str, seed: int) -> int:
    """The device's bucket 0 … 9,999 for a release seed."""
    return _bucket(f"{seed}:".encode(), device_id.encode())


def _bucket(prefix: bytes, device_key: bytes) -> int:
    """The first 8 bytes of ``sha256(prefix + device id)``, big-endian, mod 10,000.

    Never change this formula: it decides which devices are in every running rollout.
    """
    digest = hashlib.sha256(prefix + device_key).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


_VERSIONS: dict[str, Version] = {}


def cached_version(text: str) -> Version:
    """``Version.parse``, memoised: a fleet reports few distinct binary and OS versions."""
    found = _VERSIONS.get(text)
    if found is None:
        found = Version.parse(text)  # raises InvalidVersion before anything is cached
        if len(_VERSIONS) >= 4096:
            _VERSIONS.clear()
        _VERSIONS[text] = found
    return found


def percent_to_bp(percent: float) -> int:
    if not 0 <= percent <= 100:
        raise ValidationError(f"rollout must be between 0 and 100 percent, not {percent}")
    return round(percent * 100)


@dataclass(frozen=True)
class Device:
    """What a client says about itself in an update check."""

    device_id: str
    user_id: str | None = None
    os: str | None = None
    os_version: Version | None = None
    model: str | None = None
    region: str | None = None
    app_version: Version | None = None
    tags: frozenset[str] = frozenset()
    tier: str | None = None


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
    m = _RULE_RE.match(text)
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
    """A release's audience, compiled once when the index is built."""

    seed: int
    rollout_bp: int
    rules: tuple[Rule, ...] = ()
    device_ids: frozenset[str] = field(default_factory=frozenset)
    user_ids: frozenset[str] = field(default_factory=frozenset)
    #: ``"{seed}:"`` encoded once: :func:`bucket` without the per-call formatting.
    _prefix: bytes = field(init=False, repr=False, compare=False)
    _listed: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_prefix", f"{self.seed}:".encode())
        object.__setattr__(self, "_listed", bool(self.device_ids or self.user_ids))

    def whitelisted(self, d: Device) -> bool:
        return d.device_id in self.device_ids or (d.user_id is not None and d.user_id in self.user_ids)

    def admits(self, d: Device) -> bool:
        """Whitelisted, or passing every rule and inside the rollout percentage."""
        return self.admits_at(d, d.device_id.encode(), True)

    def admits_at(self, d: Device, device_key: bytes, started: bool) -> bool:
        """:meth:`admits` for the update check's hot path.

        ``device_key`` is the device id, encoded once per check. A release that has not
        ``started`` admits only its whitelist.
        """
        if self._listed and self.whitelisted(d):
            return True
        bp = self.rollout_bp
        if not started or bp <= 0:
            return False
        if self.rules and not all(rule.test(d) for rule in self.rules):
            return False
        return bp >= BUCKETS or _bucket(self._prefix, device_key) < bp
