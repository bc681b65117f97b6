"""Human output: nested values read like the rest of the table, never as Python reprs."""

from __future__ import annotations

import click
from click.testing import CliRunner

from mpaas.cli.output import emit, json_option


@click.command()
@json_option
def show(as_json: bool) -> None:
    rows = [
        {"name": "a", "targeting": {"all": True}, "labels": {"os": "ios", "tier": 2}},
        {"name": "b", "targeting": {"percent": 10, "beta": False}, "labels": [{"k": "v"}, {"x": None}]},
    ]
    emit({"items": rows}, as_json, ["name", "targeting", "labels"])
    emit({"rule": {"all": True}, "platforms": ["ios", "android"], "empty": {}}, as_json)


def test_nested_values_print_as_text_not_python_syntax() -> None:
    out = CliRunner().invoke(show, []).output
    assert "{" not in out and "'" not in out and "True" not in out
    lines = out.splitlines()
    assert lines[1].split() == ["a", "all", "os=ios,", "tier=2"]
    assert "percent=10, beta=no" in lines[2] and "k=v; x=-" in lines[2]
    assert "rule: all" in lines and "platforms: ios,android" in lines and "empty: -" in lines


def test_json_output_keeps_the_structure() -> None:
    out = CliRunner().invoke(show, ["--json"]).output
    assert '"all": true' in out
