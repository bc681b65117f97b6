"""Durations on the command line (``--expires 90d``, ``--ttl 30m``, ``--at +1h``, ``--grace 0``).

One parser for every command, so that each accepts the same units and refuses the same
input with the same one-line error. The count is bounded before it is multiplied: an
unbounded ``\\d+`` let ``+99999999999999999999d`` reach ``timedelta`` and end in a traceback.
"""

from __future__ import annotations

import re

import click

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
MAX_DURATION_SECONDS = 10 * 366 * 86_400
_DURATION = re.compile(r"([0-9]{1,9})([smhdw]?)")


def parse_duration(text: str, *, bare_seconds: bool = False, zero: bool = False) -> int:
    """Seconds in ``90d``, ``12h``, ``30m``, ``2w`` or ``45s`` (and ``90`` for 90 seconds when
    ``bare_seconds``; ``0`` only when ``zero``); ValueError says what is accepted."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or (not match.group(2) and not bare_seconds):
        example = "90, 45s, 30m, 12h, 2d or 2w" if bare_seconds else "90d, 12h, 30m or 2w"
        raise ValueError(f"{text!r} is not a duration; use a number and a unit, e.g. {example}")
    seconds = int(match.group(1)) * DURATION_UNITS.get(match.group(2), 1)
    if seconds == 0 and not zero:
        raise ValueError(f"{text!r} is not a duration: it must be longer than 0")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"{text!r} is longer than 10 years")
    return seconds


def duration_option_value(text: str, option: str, *, bare_seconds: bool = False, zero: bool = False) -> int:
    """:func:`parse_duration` for a click option: its error names the option, exit code 2."""
    try:
        return parse_duration(text, bare_seconds=bare_seconds, zero=zero)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=f"'{option}'") from None
