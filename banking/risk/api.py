"""Admin API of the risk engine: rule set versions (``/api/v1/risk/rulesets``), lists, and
stored decisions. A posted rule set is a draft; the four-eyes steps that activate it are in
:mod:`.api_review`, decisions, cases, shadows and backtests in :mod:`.api_ops`. Activation
takes effect in every server process within one epoch poll, without a deploy."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from mpaas.appkeys import DB
from mpaas.banking.risk.api_base import READERS, SCENE_SCHEMA, VERSION_SCHEMA, WRITERS, api
from mpaas.banking.risk.errors import InvalidListEntry, InvalidRuleSet
from mpaas.banking.risk.models import RiskDecision, RiskListEntry, RiskRuleSet
from mpaas.banking.risk.review import Review
from mpaas.banking.risk.rules import (
    FAIL_MODES,
    FEATURE_PATH_RE,
    MAX_EXPR,
    MAX_FEATURES,
    MAX_MESSAGE,
    MAX_RULES,
    MAX_WEIGHT,
    NAME_RE,
    parse_document,
)
from mpaas.banking.risk.store import (
    LIST_ENTITIES,
    LIST_KINDS,
    Decisions,
    Lists,
    RuleSets,
    check_scene,
    label,
)
from mpaas.errors import ValidationError
from mpaas.identity.guard import actor_of
from mpaas.web.api import (
    field_str,
    json_response,
    page,
    pagination,
    parse_int,
    pattern_schema,
    read_object,
)

RULESETS = "/api/v1/risk/rulesets"
LISTS = "/api/v1/risk/lists"
MAX_BODY = 256 << 10
RULESET_BODY = {
    "type": "object",
    "required": ["thresholds", "rules"],
    "additionalProperties": False,
    "properties": {
        "scene": {**SCENE_SCHEMA, "description": "default transfer"},
        "thresholds": {
            "type": "object",
            "description": "challenge must be lower than deny",
            "required": ["challenge", "deny"],
            "additionalProperties": False,
            "properties": {
                "challenge": {"type": "number", "minimum": 1e-9, "maximum": MAX_WEIGHT},
                "deny": {"type": "number", "minimum": 1e-9, "maximum": MAX_WEIGHT},
                "review": {
                    "type": "number",
                    "minimum": 1e-9,
                    "maximum": MAX_WEIGHT,
                    "description": "between challenge and deny; a score from here is held for review",
                },
            },
        },
        "fail_mode": {"enum": list(FAIL_MODES), "description": "default: the scene's (docs/risk.md)"},
        "model": {
            "type": "object",
            "required": ["name", "weight", "features"],
            "additionalProperties": False,
            "properties": {
                "name": pattern_schema(NAME_RE),
                "weight": {"type": "number", "minimum": 0, "maximum": MAX_WEIGHT},
                "features": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_FEATURES,
                    "uniqueItems": True,
                    "items": pattern_schema(FEATURE_PATH_RE),
                },
            },
        },
        "rules": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_RULES,
            "description": "rule names are unique",
            "items": {
                "type": "object",
                "required": ["name", "expr", "weight"],
                "properties": {
                    "name": pattern_schema(NAME_RE),
                    "expr": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_EXPR,
                        "description": "a CEL expression that compiles (docs/risk.md)",
                    },
                    "weight": {"type": "number", "minimum": 0, "maximum": MAX_WEIGHT},
                    "message": {"type": "string", "maxLength": MAX_MESSAGE},
                },
            },
        },
    },
}
LIST_BODY = {
    "type": "object",
    "required": ["kind", "entity", "value"],
    "properties": {
        "kind": {"enum": list(LIST_KINDS)},
        "entity": {"enum": list(LIST_ENTITIES)},
        "value": pattern_schema(r"[\x21-\x7e]{1,128}", description="printable ASCII, no spaces"),
        "reason": {"type": "string", "maxLength": 256},
        "expires_at": {"type": "string", "format": "date-time"},
    },
}


def ruleset_dict(row: RiskRuleSet, *, detail: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "scene": row.scene,
        "version": row.version,
        "label": label(row.scene, row.version),
        "status": row.status,
        "rules": len(row.document.get("rules", [])),
        "digest": row.digest,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "activated_at": row.activated_at,
        "submitted_by": row.submitted_by,
        "submitted_at": row.submitted_at,
        "approved_by": row.approved_by,
        "approved_at": row.approved_at,
        "activated_by": row.activated_by,
    }
    if detail:
        out["document"] = row.document
    return out


def list_dict(row: RiskListEntry) -> dict[str, Any]:
    return {
        "kind": row.kind,
        "entity": row.entity,
        "value": row.value,
        "reason": row.reason,
        "expires_at": row.expires_at,
        "created_by": row.created_by,
        "created_at": row.created_at,
    }


def decision_dict(row: RiskDecision) -> dict[str, Any]:
    return {
        "id": row.id,
        "scene": row.scene,
        "subject": row.subject,
        "ruleset_version": row.ruleset_version,
        "action": row.action,
        "score": row.score,
        "reasons": row.reasons,
        "outcomes": row.outcomes,
        "inputs": row.inputs,
        "created_at": row.created_at,
        "model_version": row.model_version,
    }


def _scene(request: web.Request) -> str:
    return check_scene(request.match_info.get("scene") or request.query.get("scene", "transfer"))


@api.route(
    "GET",
    RULESETS,
    summary="List rule set versions",
    tag="risk",
    roles=READERS,
    query={"scene": SCENE_SCHEMA},
)
async def list_rulesets(request: web.Request) -> web.Response:
    scene = request.query.get("scene")
    rows = await RuleSets(request.app[DB]).versions(check_scene(scene) if scene else None)
    return json_response({"items": [ruleset_dict(r) for r in rows]})


@api.route(
    "POST",
    RULESETS,
    summary="Store a new rule set version as a draft (CEL compiled first; a bad rule is a 400)",
    tag="risk",
    roles=WRITERS,
    body=RULESET_BODY,
    responses={201: "stored as a draft", 400: "invalid_ruleset"},
)
async def activate_ruleset(request: web.Request) -> web.Response:
    data = await read_object(request, MAX_BODY)
    scene = data.get("scene", "transfer")
    if not isinstance(scene, str):
        raise InvalidRuleSet("field 'scene' must be a string")
    doc = parse_document({k: v for k, v in data.items() if k != "scene"})
    row = await Review(request.app[DB]).draft(actor_of(request), check_scene(scene), doc)
    return json_response(ruleset_dict(row, detail=True), status=201)


@api.route(
    "GET",
    RULESETS + "/{scene}/active",
    summary="The active rule set of a scene",
    tag="risk",
    roles=READERS,
    params={"scene": SCENE_SCHEMA},
)
async def show_active(request: web.Request) -> web.Response:
    scene = _scene(request)
    active = await RuleSets(request.app[DB]).active(scene)
    if active is None:
        raise InvalidRuleSet(f"scene {scene!r} has no rule set", status=404, code="ruleset_not_found")
    return json_response({"scene": scene, "label": active.version, "document": active.doc.to_dict()})


@api.route(
    "GET",
    RULESETS + "/{scene}/{version}",
    summary="One rule set version",
    tag="risk",
    roles=READERS,
    params={"scene": SCENE_SCHEMA, "version": VERSION_SCHEMA},
)
async def show_ruleset(request: web.Request) -> web.Response:
    version = parse_int(request.match_info["version"], "version", minimum=1, maximum=10**9)
    row = await RuleSets(request.app[DB]).get(_scene(request), version)
    return json_response(ruleset_dict(row, detail=True))


@api.route(
    "GET",
    LISTS,
    summary="List entries of the deny, allow and watch lists, oldest first",
    tag="risk",
    roles=READERS,
    query={
        "limit": {"type": "integer", "minimum": 1, "maximum": 500},
        "offset": {"type": "integer", "minimum": 0},
    },
)
async def list_entries(request: web.Request) -> web.Response:
    limit, offset = pagination(request, default=100)
    rows, total = await Lists(request.app[DB]).page(limit, offset)
    return json_response(page([list_dict(r) for r in rows], total, limit, offset))


def _expiry(data: dict[str, Any]) -> datetime | None:
    raw = field_str(data, "expires_at", required=False, max_len=40)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidListEntry("expires_at must be an ISO 8601 time, such as 2027-01-31T00:00:00Z") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@api.route(
    "POST",
    LISTS,
    summary="Put a value on a list",
    tag="risk",
    roles=WRITERS,
    body=LIST_BODY,
    responses={201: "added", 409: "list_entry_exists"},
)
async def add_entry(request: web.Request) -> web.Response:
    data = await read_object(request, 16 << 10)
    row = await Lists(request.app[DB]).add(
        actor_of(request),
        field_str(data, "kind", max_len=16) or "",
        field_str(data, "entity", max_len=16) or "",
        field_str(data, "value", max_len=128) or "",
        field_str(data, "reason", required=False, max_len=256) or "",
        _expiry(data),
    )
    return json_response(list_dict(row), status=201)


@api.route(
    "DELETE",
    LISTS + "/{kind}/{entity}/{value}",
    summary="Take a value off a list",
    tag="risk",
    roles=WRITERS,
    responses={204: "removed"},
)
async def remove_entry(request: web.Request) -> web.Response:
    info = request.match_info
    await Lists(request.app[DB]).remove(actor_of(request), info["kind"], info["entity"], info["value"])
    return web.Response(status=204)


@api.route("GET", "/api/v1/risk/decisions/{id}", summary="One stored decision", tag="risk", roles=READERS)
async def show_decision(request: web.Request) -> web.Response:
    return json_response(decision_dict(await Decisions(request.app[DB]).get(request.match_info["id"])))


@api.route(
    "GET",
    "/api/v1/risk/decisions",
    summary="Decisions about one subject (a transfer id)",
    tag="risk",
    roles=READERS,
    query={"subject": {"type": "string", "minLength": 1, "maxLength": 128, "description": "the transfer id"}},
    required=("subject",),
)
async def list_decisions(request: web.Request) -> web.Response:
    subject = request.query.get("subject")
    if not subject or len(subject) > 128:
        raise ValidationError("query parameter 'subject' is required (at most 128 characters)")
    rows = await Decisions(request.app[DB]).for_subject(subject)
    return json_response({"items": [decision_dict(r) for r in rows]})


# The other route modules register on the same ``api`` (imported for that effect).
from mpaas.banking.risk import api_ops, api_review  # noqa: E402, F401
