"""The risk API beyond rule sets: deciding for the bank's other systems, cases and snoozes,
shadows, backtests, replays, and CSV list imports."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from mpaas.appkeys import DB
from mpaas.banking.risk.api_base import ID_SCHEMA, READERS, RISK, SCENE_SCHEMA, VERSION_SCHEMA, WRITERS, api
from mpaas.banking.risk.backtest import backtest, replay, same
from mpaas.banking.risk.cases import LABELS, STATUSES, CaseFilter, Cases, case_dict
from mpaas.banking.risk.csv_lists import import_csv
from mpaas.banking.risk.decision import RiskContext
from mpaas.banking.risk.errors import InvalidCase
from mpaas.banking.risk.rules import NAME_RE
from mpaas.banking.risk.shadow import ShadowResults
from mpaas.banking.risk.store import LIST_ENTITIES, check_scene
from mpaas.banking.service import BANKING
from mpaas.errors import Unavailable, ValidationError
from mpaas.identity.guard import actor_of
from mpaas.web.api import field_str, json_response, page, pagination, path_id, pattern_schema, read_object

ROOTS = ("txn", "user", "device", "net", "geo")
KEY_RE = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
SCALAR = {"type": ["string", "number", "boolean", "null"], "maxLength": 256}
CONTEXT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "what the scene is decided on (docs/risk.md): txn (with id), user, device, net, geo",
    "properties": {
        root: {"type": "object", "maxProperties": 64, "additionalProperties": SCALAR} for root in ROOTS
    },
}
DECIDE_BODY = {
    "type": "object",
    "required": ["scene", "context"],
    "additionalProperties": False,
    "properties": {"scene": SCENE_SCHEMA, "context": CONTEXT_SCHEMA},
}


def parse_context(raw: Any) -> RiskContext:
    if not isinstance(raw, dict) or not set(raw) <= set(ROOTS):
        raise ValidationError(f"'context' must be an object with only {', '.join(ROOTS)}")
    parts: dict[str, dict[str, Any]] = {}
    for root in ROOTS:
        value = raw.get(root, {})
        if not isinstance(value, dict) or len(value) > 64:
            raise ValidationError(f"context.{root} must be an object of at most 64 fields")
        for key, item in value.items():
            if re.fullmatch(KEY_RE, key) is None:
                raise ValidationError(f"context.{root}: field names must match {KEY_RE}")
            if item is not None and not isinstance(item, str | int | float | bool):
                raise ValidationError(f"context.{root}.{key} must be a string, number, boolean or null")
            if isinstance(item, str) and len(item) > 256:
                raise ValidationError(f"context.{root}.{key} is longer than 256 characters")
        parts[root] = value
    return RiskContext(**parts)


def _engine(request: web.Request) -> Any:
    banking = request.app.get(BANKING)
    if banking is None or banking.transfers is None:
        raise Unavailable("the risk engine is not running")
    return banking.transfers.risk


async def _scene_and_context(request: web.Request) -> tuple[str, RiskContext]:
    data = await read_object(request, 64 << 10)
    scene = check_scene(field_str(data, "scene", max_len=32) or "")
    return scene, parse_context(data.get("context"))


@api.route(
    "POST",
    "/api/v1/risk/decide",
    summary="Decide a scene for another system: action, score, reasons (largest first), decision id",
    tag="risk",
    roles=("admin", *RISK),
    body=DECIDE_BODY,
)
async def decide(request: web.Request) -> web.Response:
    scene, context = await _scene_and_context(request)
    decision = await _engine(request).decide(scene, context)
    return json_response(
        {
            "id": decision.id,
            "action": decision.action,
            "score": decision.score,
            "reasons": [{"rule": r.rule, "weight": r.weight, "message": r.message} for r in decision.reasons],
            "ruleset_version": decision.ruleset_version,
        }
    )


@api.route(
    "POST",
    "/api/v1/risk/committed",
    summary="Report that a decided event completed, so velocity counters see it (once per txn.id)",
    tag="risk",
    roles=("admin", *RISK),
    body=DECIDE_BODY,
    responses={204: "counted"},
)
async def committed(request: web.Request) -> web.Response:
    scene, context = await _scene_and_context(request)
    await _engine(request).committed(scene, context)
    return web.Response(status=204)


CASE_QUERY = {
    "status": {"enum": list(STATUSES)},
    "label": {"enum": list(LABELS)},
    "scene": SCENE_SCHEMA,
    "limit": {"type": "integer", "minimum": 1, "maximum": 500},
    "offset": {"type": "integer", "minimum": 0},
}


def _choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.query.get(name)
    if value is not None and value not in allowed:
        raise ValidationError(f"query parameter {name!r} must be one of {', '.join(allowed)}")
    return value


@api.route(
    "GET",
    "/api/v1/risk/cases",
    summary="The case queue, newest first",
    tag="risk",
    roles=READERS,
    query=CASE_QUERY,
)
async def list_cases(request: web.Request) -> web.Response:
    limit, offset = pagination(request)
    scene = request.query.get("scene")
    where = CaseFilter(
        _choice(request, "status", STATUSES), _choice(request, "label", LABELS), scene and check_scene(scene)
    )
    rows, total = await Cases(request.app[DB]).query(where, limit, offset)
    return json_response(page([case_dict(r) for r in rows], total, limit, offset))


@api.route(
    "GET",
    "/api/v1/risk/cases/{id}",
    summary="One case with its decision",
    tag="risk",
    roles=READERS,
    params={"id": ID_SCHEMA},
)
async def show_case(request: web.Request) -> web.Response:
    from mpaas.banking.risk.api import decision_dict

    row, decision = await Cases(request.app[DB]).get(path_id(request, "id"))
    return json_response(
        case_dict(row) | {"decision": decision_dict(decision) if decision is not None else None}
    )


LABEL_BODY = {
    "type": "object",
    "required": ["label"],
    "properties": {"label": {"enum": list(LABELS)}, "note": {"type": "string", "maxLength": 1024}},
}


@api.route(
    "POST",
    "/api/v1/risk/cases/{id}/label",
    summary="Label a case fraud or not_fraud, with a note",
    tag="risk",
    roles=WRITERS,
    params={"id": ID_SCHEMA},
    body=LABEL_BODY,
)
async def label_case(request: web.Request) -> web.Response:
    data = await read_object(request, 16 << 10)
    label = field_str(data, "label", max_len=16) or ""
    note = field_str(data, "note", required=False, max_len=1024) or ""
    row = await Cases(request.app[DB]).label(actor_of(request), path_id(request, "id"), label, note)
    return json_response(case_dict(row))


SNOOZE_BODY = {
    "type": "object",
    "required": ["rule", "entity", "days"],
    "properties": {
        "rule": pattern_schema(NAME_RE, description="a rule of the case's decision"),
        "entity": {"enum": list(LIST_ENTITIES)},
        "days": {"type": "integer", "minimum": 1, "maximum": 180},
        "reason": {"type": "string", "maxLength": 256},
    },
}


@api.route(
    "POST",
    "/api/v1/risk/cases/{id}/snooze",
    summary="Snooze one rule for one entity of a reviewed case (at most 180 days)",
    tag="risk",
    roles=WRITERS,
    params={"id": ID_SCHEMA},
    body=SNOOZE_BODY,
    responses={201: "snoozed", 409: "case_not_reviewed"},
)
async def snooze_rule(request: web.Request) -> web.Response:
    data = await read_object(request, 16 << 10)
    days = data.get("days")
    if isinstance(days, bool) or not isinstance(days, int):
        raise InvalidCase("days must be a whole number from 1 to 180")
    row = await Cases(request.app[DB]).snooze(
        actor_of(request),
        path_id(request, "id"),
        field_str(data, "rule", max_len=64) or "",
        field_str(data, "entity", max_len=16) or "",
        days,
        field_str(data, "reason", required=False, max_len=256) or "",
        datetime.now(UTC),
    )
    out = {
        "scene": row.scene,
        "rule": row.rule,
        "entity": row.entity,
        "value": row.value,
        "expires_at": row.expires_at,
    }
    return json_response(out, status=201)


SHADOW = "/api/v1/risk/shadow/{scene}"


@api.route(
    "GET",
    SHADOW,
    summary="Where a scene's shadow rule set disagrees with the live one",
    tag="risk",
    roles=READERS,
    params={"scene": SCENE_SCHEMA},
)
async def shadow_report(request: web.Request) -> web.Response:
    scene = check_scene(request.match_info["scene"])
    return json_response(await ShadowResults(request.app[DB]).report(scene))


@api.route(
    "PUT",
    SHADOW,
    summary="Set a draft rule set version as the scene's shadow",
    tag="risk",
    roles=WRITERS,
    params={"scene": SCENE_SCHEMA},
    body={"type": "object", "required": ["version"], "properties": {"version": VERSION_SCHEMA}},
)
async def set_shadow(request: web.Request) -> web.Response:
    scene = check_scene(request.match_info["scene"])
    data = await read_object(request, 4 << 10)
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= 10**9:
        raise ValidationError("field 'version' must be a rule set version number")
    await ShadowResults(request.app[DB]).set(actor_of(request), scene, version)
    return json_response(await ShadowResults(request.app[DB]).report(scene))


@api.route(
    "DELETE",
    SHADOW,
    summary="Stop a scene's shadow",
    tag="risk",
    roles=WRITERS,
    params={"scene": SCENE_SCHEMA},
    responses={204: "cleared"},
)
async def clear_shadow(request: web.Request) -> web.Response:
    await ShadowResults(request.app[DB]).clear(actor_of(request), check_scene(request.match_info["scene"]))
    return web.Response(status=204)


BACKTEST_BODY = {
    "type": "object",
    "required": ["version", "since"],
    "properties": {
        "scene": SCENE_SCHEMA,
        "version": VERSION_SCHEMA,
        "since": {"type": "string", "format": "date-time", "maxLength": 40},
    },
}


@api.route(
    "POST",
    "/api/v1/risk/backtests",
    summary="Re-evaluate stored decisions with a rule set version",
    tag="risk",
    roles=READERS,
    body=BACKTEST_BODY,
)
async def run_backtest(request: web.Request) -> web.Response:
    data = await read_object(request, 4 << 10)
    scene = check_scene(field_str(data, "scene", required=False, max_len=32) or "transfer")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= 10**9:
        raise ValidationError("field 'version' must be a rule set version number")
    raw = field_str(data, "since", max_len=40) or ""
    try:
        since = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError(
            "field 'since' must be an ISO 8601 time, such as 2027-01-01T00:00:00Z"
        ) from None
    since = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
    report = await backtest(request.app[DB], scene, version, since)
    return json_response(report.to_dict())


@api.route(
    "GET",
    "/api/v1/risk/decisions/{id}/replay",
    summary="Replay a stored decision with its own rule set version",
    tag="risk",
    roles=READERS,
)
async def replay_decision(request: web.Request) -> web.Response:
    try:
        row, result = await replay(request.app[DB], request.match_info["id"])
    except LookupError as exc:
        raise ValidationError(str(exc), status=409, code="replay_unavailable") from None
    reasons = [{"rule": r.rule, "weight": r.weight, "message": r.message} for r in result.reasons]
    replayed = {
        "action": result.action,
        "score": result.score,
        "reasons": reasons,
        "outcomes": result.outcomes,
    }
    return json_response({"id": row.id, "identical": same(row, result), "replayed": replayed})


@api.route(
    "POST",
    "/api/v1/risk/lists/import",
    summary="Import list entries from CSV (kind,entity,value,reason,expires_at), all or nothing",
    tag="risk",
    roles=WRITERS,
    body={
        "type": "object",
        "required": ["csv"],
        "properties": {"csv": {"type": "string", "maxLength": 8 << 20}},
    },
    responses={201: "imported", 400: "invalid_list_entry", 409: "list_entry_exists"},
)
async def import_lists(request: web.Request) -> web.Response:
    data = await read_object(request, 9 << 20)
    text = data.get("csv")
    if not isinstance(text, str):
        raise ValidationError("field 'csv' must be the CSV text")
    count = await import_csv(request.app[DB], actor_of(request), text)
    return json_response({"imported": count}, status=201)
