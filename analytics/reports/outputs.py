"""Report results as JSON: the dataclasses' fields plus their derived rates.

A result dataclass's ``@property`` values (stickiness, conversion, arrival rate, crash-free
shares...) are part of what an analyst reads, so they are written out beside the
fields. Rates are rounded to 6 decimal places; dates are ISO strings.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from typing import Any

from mpaas.analytics.reports.params import PushResult, RetentionCohort

RATE_DIGITS = 6


def _derived(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for klass in reversed(type(obj).__mro__):
        for name, member in vars(klass).items():
            if isinstance(member, property) and not name.startswith("_"):
                out[name] = to_json(getattr(obj, name))
    return out


def to_json(value: Any) -> Any:
    """A result (or any part of one) as JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
        out |= _derived(value)
        if isinstance(value, RetentionCohort):
            out["shares"] = to_json(value.shares())
        if isinstance(value, PushResult):
            out["by_push"] = to_json(value.totals("push_id"))
            out["by_provider"] = to_json(value.totals("provider"))
        return out
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, float):
        return round(value, RATE_DIGITS)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value
