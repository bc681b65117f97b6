"""Admin HTTP API of releases: create, list, show, pause, resume, roll back, promote, set rollout."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from mpaas.appkeys import DB
from mpaas.errors import ValidationError
from mpaas.identity import tenancy
from mpaas.identity.guard import actor_of
from mpaas.identity.models import App
from mpaas.identity.tenancy import NAME_RE
from mpaas.packages.api_schemas import PACKAGE_ID_SCHEMA, RANGE_SCHEMA, VERSION_SCHEMA
from mpaas.packages.models import KINDS
from mpaas.packages.releases.api_changes import api as changes_api
from mpaas.packages.releases.key import RELEASES
from mpaas.packages.releases.models import STATUSES
from mpaas.packages.releases.rollout import MAX_RULES, SET_FIELDS
from mpaas.packages.releases.service import ReleaseService
from mpaas.packages.releases.views import ReleaseSpec, ReleaseView, release_dict
from mpaas.web.api import (
    ID_SCHEMA,
    MAX_INT64,
    PAGE_QUERY,
    Api,
    field_str,
    json_response,
    page,
    pagination,
    path_id,
    pattern_schema,
    read_object,
    required_str,
)

api = Api()
RM = ("release-manager",)
BASE = "/api/v1/apps/{app}"
ONE = BASE + "/releases/{release_id}"
ONE_PARAMS = {"release_id": ID_SCHEMA}
#: The most reports a release may wait for before it can auto-halt (an INTEGER column).
MAX_HALT_MIN_REPORTS = 2**31 - 1
_SET_VALUE = r"[A-Za-z0-9._-]{1,32}"
_VERSION = r"[0-9]{1,9}(?:\.[0-9]{1,9}){0,2}"
#: The common forms of a targeting rule (:func:`mpaas.packages.releases.rollout.parse_rule`).
RULE_SCHEMA = pattern_schema(
    rf"(?:{'|'.join(SET_FIELDS)})!?={_SET_VALUE}(?:,{_SET_VALUE}){{0,9}}"
    rf"|(?:os_version|app_version)(?:>=|<=|>|<|=|!=|\^|~){_VERSION}",
    description="e.g. 'os=ios', 'region!=cn', 'app_version>=5.2'",
)
WHITELIST_IDS = {
    "type": "array",
    "maxItems": 100,
    "items": {"type": "string", "minLength": 1, "maxLength": 128},
}

RELEASE_BODY = {
    "type": "object",
    "required": ["package_id", "version"],
    "properties": {
        "package_id": PACKAGE_ID_SCHEMA,
        "version": VERSION_SCHEMA,
        "kind": {"enum": list(KINDS)},
        "rollout": {"type": "number", "minimum": 0, "maximum": 100, "description": "percent (default 100)"},
        "rules": {"type": "array", "maxItems": MAX_RULES, "items": RULE_SCHEMA},
        "whitelist": {
            "type": "object",
            "properties": {"device_ids": WHITELIST_IDS, "user_ids": WHITELIST_IDS},
        },
        "mandatory": {"type": "boolean"},
        "target_binary_range": RANGE_SCHEMA,
        "description": {"type": "string", "maxLength": 4000},
        "starts_at": {"type": "string", "format": "date-time", "maxLength": 64},
        "halt_failure_rate": {"type": "number", "minimum": 0, "maximum": 1},
        "halt_min_reports": {"type": "integer", "minimum": 1, "maximum": MAX_HALT_MIN_REPORTS},
    },
}


def _svc(request: web.Request) -> ReleaseService:
    return request.app[RELEASES].service


async def _app(request: web.Request) -> App:
    return await tenancy.get_app(request.app[DB], request.match_info["app"])


def _release_id(request: web.Request) -> int:
    return path_id(request, "release_id")


def _number(data: dict[str, Any], name: str, default: float) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"field {name!r} must be a number")
    return float(value)


def _bool(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise ValidationError(f"field {name!r} must be a boolean")
    return value


def _spec(data: dict[str, Any]) -> ReleaseSpec:
    package_id = required_str(data, "package_id", max_len=128)
    version = required_str(data, "version", max_len=64)
    rules = data.get("rules") or []
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise ValidationError("field 'rules' must be a list of strings")
    starts = field_str(data, "starts_at", required=False, max_len=64)
    starts_at = None
    if starts is not None:
        try:
            starts_at = datetime.fromisoformat(starts.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError("starts_at must be an ISO 8601 time") from None
        if starts_at.tzinfo is None:
            raise ValidationError("starts_at needs a time zone (e.g. 2026-01-01T08:00:00Z)")
    whitelist = data.get("whitelist")
    if whitelist is not None and not isinstance(whitelist, dict):
        raise ValidationError("field 'whitelist' must be an object")
    min_reports = data.get("halt_min_reports", 50)
    if type(min_reports) is not int or not 1 <= min_reports <= MAX_HALT_MIN_REPORTS:
        raise ValidationError(f"field 'halt_min_reports' must be an integer from 1 to {MAX_HALT_MIN_REPORTS}")
    return ReleaseSpec(
        package_id=package_id,
        version=version,
        kind=field_str(data, "kind", required=False, max_len=16),
        rollout_percent=_number(data, "rollout", 100.0),
        rules=tuple(rules),
        whitelist=whitelist,
        mandatory=_bool(data, "mandatory"),
        target_binary_range=field_str(data, "target_binary_range", required=False),
        description=field_str(data, "description", required=False, max_len=4000),
        starts_at=starts_at,
        halt_failure_rate=_number(data, "halt_failure_rate", 0.2),
        halt_min_reports=min_reports,
    )


def _out(view: ReleaseView, app: App, status: int = 200, *, full: bool = False) -> web.Response:
    return json_response(release_dict(view, app.name, full=full), status=status)


@api.route(
    "POST",
    BASE + "/channels/{channel}/releases",
    summary="Release a published package on a channel (rollout, rules, whitelist)",
    tag="releases",
    roles=RM,
    body=RELEASE_BODY,
    responses={201: "released"},
)
async def create_release(request: web.Request) -> web.Response:
    spec = _spec(await read_object(request))
    app = await _app(request)
    view = await _svc(request).create(app, actor_of(request), request.match_info["channel"], spec)
    return _out(view, app, 201)


@api.route(
    "GET",
    BASE + "/releases",
    summary="List releases, newest first, with counters",
    tag="releases",
    roles=(*RM, "analyst"),
    query={
        "channel": "string",
        "kind": {"enum": list(KINDS)},
        "id": "string",
        "status": {"enum": list(STATUSES)},
        **PAGE_QUERY,
    },
)
async def list_releases(request: web.Request) -> web.Response:
    limit, offset = pagination(request)
    app = await _app(request)
    q = request.query
    rows, total = await _svc(request).list(
        app,
        channel=q.get("channel"),
        kind=q.get("kind"),
        package_id=q.get("id"),
        status=q.get("status"),
        limit=limit,
        offset=offset,
    )
    return json_response(page([release_dict(v, app.name) for v in rows], total, limit, offset))


@api.route(
    "GET",
    ONE,
    summary="Show a release with its counters",
    tag="releases",
    roles=(*RM, "analyst"),
    params=ONE_PARAMS,
)
async def show_release(request: web.Request) -> web.Response:
    app = await _app(request)
    return _out(await _svc(request).get(app, _release_id(request)), app, full=True)


@api.route(
    "POST",
    ONE + "/pause",
    summary="Stop offering a release to more devices",
    tag="releases",
    roles=RM,
    params=ONE_PARAMS,
)
async def pause_release(request: web.Request) -> web.Response:
    app = await _app(request)
    return _out(await _svc(request).pause(app, actor_of(request), _release_id(request)), app)


@api.route(
    "POST",
    ONE + "/resume",
    summary="Resume a paused or auto-halted release",
    tag="releases",
    roles=RM,
    params=ONE_PARAMS,
)
async def resume_release(request: web.Request) -> web.Response:
    app = await _app(request)
    return _out(await _svc(request).resume(app, actor_of(request), _release_id(request)), app)


@api.route(
    "POST",
    ONE + "/rollout",
    summary="Set the rollout percentage (raising keeps the devices already in)",
    tag="releases",
    roles=RM,
    body={
        "type": "object",
        "required": ["rollout"],
        "properties": {"rollout": {"type": "number", "minimum": 0, "maximum": 100}},
    },
    params=ONE_PARAMS,
)
async def set_rollout(request: web.Request) -> web.Response:
    data = await read_object(request)
    app = await _app(request)
    percent = _number(data, "rollout", -1)
    return _out(await _svc(request).set_rollout(app, actor_of(request), _release_id(request), percent), app)


@api.route(
    "POST",
    ONE + "/promote",
    summary="Release the same package on another channel (e.g. staging → production)",
    tag="releases",
    roles=RM,
    body={
        "type": "object",
        "properties": {
            "channel": pattern_schema(NAME_RE, default="production"),
            "rollout": {
                "type": "number",
                "minimum": 0,
                "maximum": 100,
                "description": "default: the source's",
            },
            "description": {"type": "string", "maxLength": 4000, "description": "default: the source's"},
            "mandatory": {"type": "boolean", "description": "default: the source's"},
        },
    },
    responses={201: "released"},
    params=ONE_PARAMS,
)
async def promote_release(request: web.Request) -> web.Response:
    data = await read_object(request) if request.can_read_body else {}
    target = field_str(data, "channel", required=False, max_len=63) or "production"
    app = await _app(request)
    view = await _svc(request).promote(
        app,
        actor_of(request),
        _release_id(request),
        target,
        rollout=_number(data, "rollout", 0) if "rollout" in data else None,
        description=field_str(data, "description", required=False, max_len=4000),
        mandatory=_bool(data, "mandatory") if "mandatory" in data else None,
    )
    return _out(view, app, 201)


@api.route(
    "POST",
    BASE + "/channels/{channel}/rollback",
    summary="Roll back a lineage's newest release (to the previous one, or to the binary's embedded version)",
    tag="releases",
    roles=RM,
    body={
        "type": "object",
        "required": ["id"],
        "properties": {
            "kind": {"enum": list(KINDS)},
            "id": PACKAGE_ID_SCHEMA,
            "to_embedded": {"type": "boolean"},
            "mandatory": {"type": "boolean"},
            "to_release": {**ID_SCHEMA, "description": "roll back to this earlier release of the lineage"},
        },
        "not": {"required": ["to_embedded", "to_release"], "properties": {"to_embedded": {"const": True}}},
    },
    responses={201: "the rollback release"},
)
async def rollback(request: web.Request) -> web.Response:
    data = await read_object(request)
    package_id = required_str(data, "id", max_len=128)
    kind = field_str(data, "kind", required=False, max_len=16)  # None: the lineage's only kind
    if kind is not None and kind not in KINDS:
        raise ValidationError(f"kind must be one of {', '.join(KINDS)}")
    to_release = data.get("to_release")
    if to_release is not None and (type(to_release) is not int or not 1 <= to_release <= MAX_INT64):
        raise ValidationError("field 'to_release' must be a release id")
    app = await _app(request)
    view = await _svc(request).rollback(
        app,
        actor_of(request),
        request.match_info["channel"],
        kind,
        package_id,
        to_embedded=_bool(data, "to_embedded"),
        mandatory=_bool(data, "mandatory"),
        to_release=to_release,
    )
    return _out(view, app, 201)


api.extend(changes_api)
