"""`mpaas risk models …`: register scoring models (LightGBM text or ONNX) as immutable
versions, list and show them, and activate one for a scene (refused unless the scene's rule
set feeds it exactly its features). docs/risk.md, "Models"."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import yaml

from mpaas.cli.client import ApiClient
from mpaas.cli.errors import CliError
from mpaas.cli.output import emit, emit_json, emit_record, emit_table, json_option

MODELS = "/api/v1/risk/models"
MAX_ARTEFACT = 8 << 20
MAX_SPEC = 256 << 10


@click.group("models")
def models_group() -> None:
    """Scoring models: register versions, activate one per scene."""


def _spec(path: Path | None) -> dict[str, Any]:
    """A model's description file (YAML or JSON): name, features, calibration, description."""
    if path is None:
        return {}
    if path.stat().st_size > MAX_SPEC:
        raise CliError(f"{path} is larger than {MAX_SPEC} bytes")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CliError(f"{path} is not valid YAML or JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise CliError(f"{path} must hold an object with at least 'features'")
    return data


def _format(file: Path, given: str | None, spec: dict[str, Any]) -> str:
    if given:
        return given
    if isinstance(spec.get("format"), str):
        return str(spec["format"])
    if file.suffix == ".onnx":
        return "onnx"
    if file.suffix == ".txt":
        return "lightgbm"
    raise CliError("say --format lightgbm or onnx (the file name does not tell)")


@models_group.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="Model name (default: the spec's).")
@click.option(
    "--format", "fmt", type=click.Choice(["lightgbm", "onnx"]), default=None, help="Default: by extension."
)
@click.option(
    "--spec",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="YAML/JSON with features, calibration, description (default_model.json has this shape).",
)
@click.option("--features", default=None, help="Comma-separated context paths, in the model's order.")
@click.option("--description", default=None, help="What the model is, how it was trained.")
@json_option
def add_cmd(
    file: Path,
    name: str | None,
    fmt: str | None,
    spec: Path | None,
    features: str | None,
    description: str | None,
    as_json: bool,
) -> None:
    """Upload FILE as the next version of a model (checked by loading it on the server)."""
    if file.stat().st_size > MAX_ARTEFACT:
        raise CliError(f"{file} is larger than {MAX_ARTEFACT >> 20} MiB")
    data = _spec(spec)
    body: dict[str, Any] = {
        "name": name or data.get("name"),
        "format": _format(file, fmt, data),
        "features": [f.strip() for f in features.split(",") if f.strip()]
        if features
        else data.get("features"),
        "artefact": base64.b64encode(file.read_bytes()).decode(),
    }
    if not body["name"]:
        raise CliError("give the model a --name (or a spec with 'name')")
    if not body["features"]:
        raise CliError("give the model's --features (or a spec with 'features')")
    if data.get("calibration") is not None:
        body["calibration"] = data["calibration"]
    if description or data.get("description"):
        body["description"] = description or data.get("description")
    out = ApiClient().call("POST", MODELS, json_body=body)
    if as_json:
        emit_json(out)
        return
    click.echo(
        f"registered {out['label']} ({out['format']}, {len(out['features'])} features, "
        f"sha256 {out['sha256'][:12]})"
    )


@models_group.command("list")
@click.option("--name", default=None, help="Only this model's versions.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@json_option
def list_cmd(name: str | None, limit: int, offset: int, as_json: bool) -> None:
    """Registered versions, newest first, with the scenes each scores."""
    out = ApiClient().call("GET", MODELS, params={"name": name, "limit": limit, "offset": offset})
    emit(out, as_json, ["label", "format", "features", "active_in", "sha256", "created_by", "created_at"])
    if not as_json:
        shipped = out["shipped"]
        click.echo(
            f"shipped: {shipped['name']}@{shipped['version']} (scores its scene until a version is activated)"
        )


@models_group.command("show")
@click.argument("name")
@click.argument("version", type=click.IntRange(1))
@json_option
def show_cmd(name: str, version: int, as_json: bool) -> None:
    """One version: features in order, calibration, sha256, scenes."""
    out = ApiClient().call("GET", f"{MODELS}/{quote(name, safe='')}/{version}")
    if as_json:
        emit_json(out)
        return
    emit_record(
        out, ["label", "format", "sha256", "size", "active_in", "created_by", "created_at", "description"]
    )
    click.echo("calibration: " + json.dumps(out["calibration"]))
    emit_table([{"#": i + 1, "feature": f} for i, f in enumerate(out["features"])], ["#", "feature"])


@models_group.command("activate")
@click.argument("name")
@click.argument("version", type=click.IntRange(1))
@click.option("--scene", default="transfer", show_default=True, help="The scene it scores.")
@json_option
def activate_cmd(name: str, version: int, scene: str, as_json: bool) -> None:
    """Score SCENE with NAME@VERSION (every server within one poll)."""
    path = f"{MODELS}/{quote(name, safe='')}/{version}/activate"
    out = ApiClient().call("POST", path, json_body={"scene": scene})
    if as_json:
        emit_json(out)
        return
    click.echo(f"activated {out['label']} for scene {out['scene']}")
