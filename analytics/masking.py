"""Masking personal data at load: card numbers, PRC resident ID numbers, mainland mobile numbers.

A bank may not keep these in an analytics store, so the loader replaces every string
(or integer) value of an event's properties, traits and context that holds one with a
marker such as ``[masked:card]``, unless the event catalogue allows that property.

- **Card numbers**: 13 to 19 digits, optionally grouped by single spaces or dashes
  (``4111 1111 1111 1111``, ``3782-822463-10005``), whose Luhn check digit is right.
- **PRC resident ID numbers**: 17 digits and a check character (a digit or ``X``)
  that ISO 7064 MOD 11-2 confirms, as GB 11643 defines it.
- **Mainland mobile numbers**: ``1[3-9]`` and nine more digits, optionally grouped
  (``138 1234 5678``) and optionally after ``86``/``+86``/``0086``.

Full-width digits (``１３８…``) count as digits.
Digits are matched only where no other digit touches them, and groups are tried only
at their own boundaries, so that a digit run inside a longer number is not a match.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

CARD, ID, MOBILE = "card", "id", "mobile"
#: Anything maskable has at least 11 digits: a cheap test on serialised JSON first. Full-width
#: digits (as Chinese input methods type them, UTF-8 ``EF BC 90``-``99``) are looked at too.
QUICK = re.compile(rb"[0-9](?:[ -]?[0-9]){10}|\xef\xbc[\x90-\x99]")
_FULLWIDTH = {0xFF10 + i: 0x30 + i for i in range(10)}
_QUICK_STR = re.compile(r"[0-9](?:[ -]?[0-9]){10}")
#: A maximal run of digit groups joined by single spaces or dashes.
_RUN = re.compile(r"[0-9]+(?:[ -][0-9]+)*")
_GROUP = re.compile(r"[0-9]+")
_ID_X = re.compile(r"(?<![0-9])[0-9]{17}[Xx](?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?:86)?1[3-9][0-9]{9}")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
MAX_CARD = 19


def marker(kind: str) -> str:
    return f"[masked:{kind}]"


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check over a string of ASCII digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def prc_id_valid(text: str) -> bool:
    """An 18-character PRC resident ID number whose MOD 11-2 check character is right."""
    if len(text) != 18 or not text[:17].isdigit():
        return False
    total = sum(int(c) * w for c, w in zip(text[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == text[17].upper()


def classify(digits: str) -> str | None:
    """What a run of bare digits is: ``card``, ``id``, ``mobile`` or None."""
    n = len(digits)
    if n == 18 and prc_id_valid(digits):
        return ID
    if 13 <= n <= MAX_CARD and luhn_valid(digits):
        return CARD
    if n in (11, 13) and _MOBILE.fullmatch(digits):
        return MOBILE
    return None


def find(text: str) -> list[tuple[int, int, str]]:
    """Spans ``(start, end, kind)`` of personal numbers in ``text``, merged, in order."""
    spans: list[tuple[int, int, str]] = []
    for m in _ID_X.finditer(text):
        if prc_id_valid(m.group()):
            spans.append((m.start(), m.end(), ID))
    for run in _RUN.finditer(text):
        groups = [(g.start(), g.end()) for g in _GROUP.finditer(text, run.start(), run.end())]
        for i, (start, _end) in enumerate(groups):
            digits = ""
            for j in range(i, len(groups)):
                digits += text[groups[j][0] : groups[j][1]]
                if len(digits) > MAX_CARD:
                    break
                kind = classify(digits)
                if kind is not None:
                    spans.append((start, groups[j][1], kind))
    if not spans:
        return spans
    spans.sort()
    merged = [spans[0]]
    for start, end, kind in spans[1:]:
        last_start, last_end, last_kind = merged[-1]
        if start < last_end:
            merged[-1] = (last_start, max(end, last_end), last_kind)
        else:
            merged.append((start, end, kind))
    return merged


def mask_text(text: str) -> tuple[str, set[str]]:
    """``text`` with every personal number replaced by its marker, and the kinds found."""
    probe = text.translate(_FULLWIDTH) if max(text, default="") >= "\uff10" else text
    if not _QUICK_STR.search(probe):
        return text, set()
    spans = find(probe)  # same length as text: spans apply to both
    if not spans:
        return text, set()
    out, at, kinds = [], 0, set()
    for start, end, kind in spans:
        out.append(text[at:start])
        out.append(marker(kind))
        kinds.add(kind)
        at = end
    out.append(text[at:])
    return "".join(out), kinds


def _mask_scalar(value: Any) -> tuple[Any, set[str]]:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**10:
        kind = classify(str(abs(value)))
        if kind is not None:
            return marker(kind), {kind}
    return value, set()


def mask_tree(value: Any, allowed: Collection[str] = ()) -> tuple[Any, set[str]]:
    """Mask every personal number in a JSON value, in place where it is a container.

    ``allowed`` holds property paths (``phone``, ``payee.phone``) left as they are, with
    everything below them. The walk uses an explicit stack, so any depth is safe.
    Returns the (possibly new) value and the kinds of numbers masked.
    """
    kinds: set[str] = set()
    if not isinstance(value, dict | list):
        new, found = _mask_scalar(value)
        return new, found
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        container, path = stack.pop()
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, item in list(items):
            child = (
                f"{path}.{key}" if path and isinstance(key, str) else (key if isinstance(key, str) else path)
            )
            if allowed and isinstance(key, str) and child in allowed:
                continue
            if isinstance(item, dict | list):
                stack.append((item, child))
                continue
            new, found = _mask_scalar(item)
            if found:
                container[key] = new
                kinds |= found
    return value, kinds
