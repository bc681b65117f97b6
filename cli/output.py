"""Printing results: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import click


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
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
