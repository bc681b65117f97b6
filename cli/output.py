"""Printing results: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import click


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def _nested(value: Any) -> str:
    """A value inside a dict or list, as the tables read: ``all``, ``k=v, k2=v2``, ``a,b``."""
    if value is None:
        return "-"
    if isinstance(value, Mapping):
        parts = []
        for key, item in value.items():
            if item is True:
                parts.append(str(key))
            elif item is False or item is None:
                parts.append(f"{key}=no" if item is False else f"{key}=-")
            elif isinstance(item, Mapping):
                parts.append(f"{key}=({_nested(item)})")
            else:
                parts.append(f"{key}={_nested(item)}")
        return ", ".join(parts) if parts else "-"
    if isinstance(value, list | tuple | set | frozenset):
        items = [_nested(v) for v in value]
        sep = "; " if any(isinstance(v, Mapping) for v in value) else ","
        return sep.join(items) if items else "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        return _nested(value)
    return str(value)


def emit_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def emit_record(data: Mapping[str, Any], keys: Sequence[str] | None = None) -> None:
    for key in keys or list(data):
        click.echo(f"{key}: {_cell(data.get(key))}")


def emit(data: Any, as_json: bool, columns: Sequence[str] | None = None) -> None:
    if as_json:
        emit_json(data)
    elif columns is not None and isinstance(data, Mapping) and "items" in data:
        emit_table(data["items"], columns)
        if data.get("next_offset") is not None:
            click.echo(f"… {data['total']} in all; next page: --offset {data['next_offset']}", err=True)
    elif isinstance(data, Mapping):
        emit_record(data)
    else:
        click.echo(str(data))


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
