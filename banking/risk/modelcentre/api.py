"""Admin API of the model centre, ``/api/v1/risk/models``: list, add (upload, base64 in JSON),
show, activate for a scene. Activation takes effect in every server process within one
epoch poll; a model whose features differ from the scene's rule set is refused (409)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aiohttp import web

from mpaas.appkeys import DB
from mpaas.banking.risk.api_base import READERS, SCENE_SCHEMA, WRITERS  # the risk API's
from mpaas.banking.risk.modelcentre.errors import InvalidModel
from mpaas.banking.risk.modelcentre.models import RiskModel, RiskModelActivation
from mpaas.banking.risk.modelcentre.registry import (
    MAX_ARTEFACT,
    MAX_DESCRIPTION,
    MAX_FEATURES,
    ModelRegistry,
    check_name,
    model_label,
    shipped,
)
from mpaas.banking.risk.modelcentre.runtime import FORMATS
from mpaas.banking.risk.rules import FEATURE_PATH_RE, NAME_RE
from mpaas.banking.risk.store import check_scene
from mpaas.identity.guard import actor_of
from mpaas.web.api import (
    PAGE_QUERY,
    Api,
    field_str,
    json_response,
    pagination,
    parse_int,
    pattern_schema,
    read_object,
)

api = Api()
MODELS = "/api/v1/risk/models"
MAX_BODY = MAX_ARTEFACT * 4 // 3 + (64 << 10)
NAME_SCHEMA = pattern_schema(NAME_RE)
VERSION_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 10**9}
ADD_BODY = {
    "type": "object",
    "required": ["name", "format", "features", "artefact"],
    "additionalProperties": False,
    "properties": {
        "name": NAME_SCHEMA,
        "format": {"enum": list(FORMATS)},
        "features": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_FEATURES,
            "items": pattern_schema(FEATURE_PATH_RE),
            "description": "dotted context paths, in the order the model takes them",
        },
        "calibration": {
            "type": "object",
            "description": "{method: none} | {method: platt, a, b} | {method: isotonic, x: [...], y: [...]}",
        },
        "description": {"type": "string", "maxLength": MAX_DESCRIPTION},
        "artefact": {
            "type": "string",
            "minLength": 4,
            "description": f"base64 of the model file (LightGBM text or ONNX), ≤ {MAX_ARTEFACT >> 20} MiB",
        },
    },
}
ADD_FIELDS = {"name", "format", "features", "calibration", "description", "artefact"}
ACTIVATE_BODY = {
    "type": "object",
    "required": ["scene"],
    "additionalProperties": False,
    "properties": {"scene": SCENE_SCHEMA},
}


def model_dict(row: RiskModel, active_in: list[str], *, detail: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": row.name,
        "version": row.version,
        "label": model_label(row.name, row.version),
        "format": row.format,
        "features": len(row.features),
        "sha256": row.sha256,
        "size": row.size,
        "active_in": active_in,
        "created_by": row.created_by,
        "created_at": row.created_at,
    }
    if detail:
        out |= {
            "features": list(row.features),
            "calibration": row.calibration,
            "description": row.description,
        }
    return out


def activation_dict(row: RiskModelActivation) -> dict[str, Any]:
    return {
        "scene": row.scene,
        "name": row.name,
        "version": row.version,
        "label": model_label(row.name, row.version),
        "activated_by": row.activated_by,
        "activated_at": row.activated_at,
    }


def _scenes(activations: list[RiskModelActivation], row: RiskModel) -> list[str]:
    return [a.scene for a in activations if a.name == row.name and a.version == row.version]


def _version(request: web.Request) -> tuple[str, int]:
    name = check_name(request.match_info["name"])
    return name, parse_int(request.match_info["version"], "version", minimum=1, maximum=10**9)


@api.route(
    "GET",
    MODELS,
    summary="Registered model versions (newest first), the active ones, and the shipped model",
    tag="risk",
    roles=READERS,
    query={"name": NAME_SCHEMA, **PAGE_QUERY},
)
async def list_models(request: web.Request) -> web.Response:
    limit, offset = pagination(request)
    name = request.query.get("name")
    registry = ModelRegistry(request.app[DB])
    rows, total = await registry.versions(check_name(name) if name else None, limit, offset)
    activations = await registry.activations()
    package = shipped()
    return json_response(
        {
            "items": [model_dict(r, _scenes(activations, r)) for r in rows],
            "total": total,
            "next_offset": offset + limit if offset + limit < total else None,
            "active": [activation_dict(a) for a in activations],
            "shipped": {k: package.meta[k] for k in ("name", "version", "format", "sha256", "features")},
        }
    )


@api.route(
    "POST",
    MODELS,
    summary="Register a new, immutable model version (loaded and checked before it is stored)",
    tag="risk",
    roles=WRITERS,
    body=ADD_BODY,
    responses={201: "registered", 400: "invalid_model"},
)
async def add_model(request: web.Request) -> web.Response:
    data = await read_object(request, MAX_BODY)
    unknown = set(data) - ADD_FIELDS
    if unknown:
        raise InvalidModel(f"unknown field(s): {', '.join(sorted(unknown))}")
    raw = field_str(data, "artefact", max_len=MAX_BODY) or ""
    try:
        artefact = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidModel("artefact must be base64") from None
    row = await ModelRegistry(request.app[DB]).add(
        actor_of(request),
        check_name(data.get("name")),
        field_str(data, "format", max_len=16) or "",
        artefact,
        data.get("features"),
        data.get("calibration"),
        field_str(data, "description", required=False, max_len=MAX_DESCRIPTION) or "",
    )
    return json_response(model_dict(row, [], detail=True), status=201)


@api.route(
    "GET",
    MODELS + "/{name}/{version}",
    summary="One model version: features, calibration, sha256, where it is active",
    tag="risk",
    roles=READERS,
    params={"name": NAME_SCHEMA, "version": VERSION_SCHEMA},
)
async def show_model(request: web.Request) -> web.Response:
    name, version = _version(request)
    registry = ModelRegistry(request.app[DB])
    row = await registry.get(name, version)
    return json_response(model_dict(row, _scenes(await registry.activations(name), row), detail=True))


@api.route(
    "POST",
    MODELS + "/{name}/{version}/activate",
    summary="Score a scene with this version (refused unless its rule set feeds exactly its features)",
    tag="risk",
    roles=WRITERS,
    params={"name": NAME_SCHEMA, "version": VERSION_SCHEMA},
    body=ACTIVATE_BODY,
    responses={200: "activated", 404: "model_not_found", 409: "model_schema_mismatch"},
)
async def activate_model(request: web.Request) -> web.Response:
    name, version = _version(request)
    data = await read_object(request, 4 << 10)
    scene = check_scene(field_str(data, "scene", max_len=32) or "")
    row = await ModelRegistry(request.app[DB]).activate(actor_of(request), scene, name, version)
    return json_response(activation_dict(row))
