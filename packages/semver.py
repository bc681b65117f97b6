"""Versions and version ranges, as release engineers write them for binary targets.

A version is ``MAJOR[.MINOR[.PATCH]]`` with an optional ``-prerelease`` and ignored
``+build``; missing parts are 0. A range is one or more alternatives joined by
``||``; an alternative is space-separated comparators that must all hold:
``>=5.2 <6``, ``=1.2.3``, ``1.2.3``, ``^1.2``, ``~1.2.3``, ``1.2.x``, ``1.x``, ``*``,
or a hyphen range ``1.2 - 1.4``. This is the subset of npm's semver ranges that
CodePush's ``target_binary_range`` uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from mpaas.errors import ValidationError

_VERSION_RE = re.compile(
    r"^v?(\d{1,9})(?:\.(\d{1,9}))?(?:\.(\d{1,9}))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)
_PARTIAL_RE = re.compile(
    r"^v?(\d{1,9}|[xX*])(?:\.(\d{1,9}|[xX*]))?(?:\.(\d{1,9}|[xX*]))?(?:-([0-9A-Za-z.-]+))?$"
)
_COMPARATOR_RE = re.compile(r"^(>=|<=|>|<|=|\^|~)?\s*(.+)$")


class InvalidVersion(ValidationError):
    code = "invalid_version"


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int = 0
    patch: int = 0
    pre: tuple[int | str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Version:
        m = _VERSION_RE.fullmatch(text.strip())
        if not m:
            raise InvalidVersion(f"{text!r} is not a version like 1.2.3")
        pre = tuple(int(p) if p.isdigit() else p for p in m.group(4).split(".")) if m.group(4) else ()
        return cls(int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0), pre)

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
        # A release sorts after its pre-releases; numeric identifiers sort before text.
        pre_key = tuple((0, p) if isinstance(p, int) else (1, p) for p in self.pre)
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, pre_key)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}.{self.patch}"
        return base + ("-" + ".".join(str(p) for p in self.pre) if self.pre else "")


@dataclass(frozen=True)
class Comparator:
    op: str
    version: Version

    def test(self, v: Version) -> bool:
        if self.op == ">=":
            return v >= self.version
        if self.op == ">":
            return v > self.version
        if self.op == "<=":
            return v <= self.version
        if self.op == "<":
            return v < self.version
        return v == self.version


def _partial(text: str) -> tuple[list[int | None], tuple[int | str, ...]]:
    m = _PARTIAL_RE.fullmatch(text)
    if not m:
        raise InvalidVersion(f"{text!r} is not a version or version pattern")
    parts: list[int | None] = []
    for g in m.group(1, 2, 3):
        parts.append(None if g is None or g in "xX*" else int(g))
    # Anything after a wildcard is a wildcard too: 1.x.3 means 1.x.
    for i in range(3):
        if parts[i] is None:
            parts[i + 1 :] = [None] * (2 - i)
            break
    pre = tuple(int(p) if p.isdigit() else p for p in m.group(4).split(".")) if m.group(4) else ()
    return parts, pre


def _bounds(op: str, text: str) -> list[Comparator]:
    parts, pre = _partial(text)
    major, minor, patch = parts
    if major is None:
        return [] if op in ("", "=", ">=", "<=", "^", "~") else [Comparator("<", Version(0, 0, 0, (0,)))]
    low = Version(major, minor or 0, patch or 0, pre)
    if op in ("", "="):
        if minor is None:
            return [Comparator(">=", low), Comparator("<", Version(major + 1))]
        if patch is None:
            return [Comparator(">=", low), Comparator("<", Version(major, minor + 1))]
        return [Comparator("=", low)]
    if op == "^":
        if major > 0 or minor is None:
            high = Version(major + 1)
        elif minor > 0 or patch is None:
            high = Version(0, minor + 1)
        else:
            high = Version(0, 0, (patch or 0) + 1)
        return [Comparator(">=", low), Comparator("<", high)]
    if op == "~":
        high = Version(major + 1) if minor is None else Version(major, minor + 1)
        return [Comparator(">=", low), Comparator("<", high)]
    if op == ">":
        if minor is None:
            return [Comparator(">=", Version(major + 1))]
        if patch is None:
            return [Comparator(">=", Version(major, minor + 1))]
        return [Comparator(">", low)]
    if op == "<=":
        if minor is None:
            return [Comparator("<", Version(major + 1))]
        if patch is None:
            return [Comparator("<", Version(major, minor + 1))]
        return [Comparator("<=", low)]
    return [Comparator(op, low)]


@dataclass(frozen=True)
class Range:
    text: str
    alternatives: tuple[tuple[Comparator, ...], ...]

    @classmethod
    def parse(cls, text: str) -> Range:
        if len(text) > 256:
            raise InvalidVersion("version range is longer than 256 characters")
        alternatives = []
        for alt in text.split("||"):
            alt = alt.strip()
            comparators: list[Comparator] = []
            if " - " in alt:
                low, _, high = alt.partition(" - ")
                comparators += _bounds(">=", low.strip()) + _bounds("<=", high.strip())
            else:
                tokens = re.sub(r"(>=|<=|>|<|=|\^|~)\s+", r"\1", alt).split()
                if not tokens:
                    raise InvalidVersion(f"empty alternative in version range {text!r}")
                for token in tokens:
                    m = _COMPARATOR_RE.fullmatch(token)
                    if m is None:
                        raise InvalidVersion(f"{token!r} is not a comparator in version range {text!r}")
                    comparators += _bounds(m.group(1) or "", m.group(2))
            alternatives.append(tuple(comparators))
        return cls(text.strip(), tuple(alternatives))

    def contains(self, version: Version | str) -> bool:
        v = Version.parse(version) if isinstance(version, str) else version
        return any(all(c.test(v) for c in alt) for alt in self.alternatives)


def check_range(text: str) -> str:
    Range.parse(text)
    return text.strip()
