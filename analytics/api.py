"""HTTP API of the analytics domain: ingest (client), and write keys, the event catalogue,
deletion requests and status (admin, with roles).

Write keys are credentials: only ``admin`` makes or rotates them. The catalogue is the
product team's: ``analyst`` may define events. Forgetting a user is ``admin`` only.
"""

from __future__ import annotations

import re

from aiohttp import web

from mpaas.analytics import forget, writekeys
from mpaas.analytics.catalog import service as catalog
from mpaas.analytics.ingest.handlers import api as ingest_api
from mpaas.analytics.runtime import ANALYTICS
from mpaas.appkeys import DB
from mpaas.errors import ValidationError
from mpaas.identity.guard import actor_of
from mpaas.web.api import (
    ID_SCHEMA,
    PAGE_QUERY,
    Api,
    field_str,
    json_response,
    page,
    pagination,
    path_id,
    pattern_schema,
    read_object,
)

api = Api()
api.extend(ingest_api)
ANALYST = ("analyst",)
KEYS = "/api/v1/apps/{app}/analytics/write-keys"
EVENTS = "/api/v1/apps/{app}/events"

KEY_BODY = {"type": "object", "properties": {"label": {"type": "string", "maxLength": 128}}}
ROTATE_BODY = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "maxLength": 128},
        "grace_seconds": {"type": "integer", "minimum": 0, "description": "old keys keep working this long"},
    },
}
#: An event name (a user-defined one: the built-ins' prefix is reserved).
EVENT_NAME = pattern_schema(catalog.NAME_RE, description=f"not starting with {catalog.PREFIX!r}")
EVENT_NAME["not"] = {"pattern": "^" + re.escape(catalog.PREFIX)}
PROPERTY_SCHEMA = {
    "type": "object",
    "properties": {"type": {"enum": ["string", "integer", "number", "boolean", "object", "array", "null"]}},
    "additionalProperties": False,
}
DEFINE_BODY = {
    "type": "object",
    "properties": {
        "description": {"type": "string", "maxLength": 4000},
        "properties_schema": {
            "type": "object",
            "description": "JSON Schema (2020-12) of the properties: an object schema; mode "
            "reject needs its 'properties'",
            "properties": {
                "type": {"const": "object"},
                "properties": {"type": "object", "additionalProperties": PROPERTY_SCHEMA},
            },
            "additionalProperties": False,
        },
        "owner": {"type": "string", "maxLength": 128},
        "mode": {"enum": ["record", "warn", "reject"]},
        "pii_allowed": {
            "type": "array",
            "maxItems": 100,
            "items": pattern_schema(catalog.PATH_RE, description="a property path like a or a.b"),
        },
    },
    "if": {"properties": {"mode": {"const": "reject"}}, "required": ["mode"]},
    "then": {
        "required": ["properties_schema"],
        "properties": {"properties_schema": {"required": ["properties"]}},
    },
}
FORGET_BODY = {
    "type": "object",
    "required": ["user_id"],
    "properties": {
        "user_id": {"type": "string", "minLength": 1, "maxLength": 256},
        "app": {"type": "string", "minLength": 1, "maxLength": 64, "description": "default: every app"},
    },
}


@api.route(
    "POST",
    KEYS,
    summary="Create a Segment write key (shown once)",
    tag="analytics",
    body=KEY_BODY,
    responses={201: "created; the key is in write_key"},
)
async def create_write_key(request: web.Request) -> web.Response:
    data = await read_object(request)
    app = request.match_info["app"]
    row, key = await writekeys.create(
        request.app[DB], actor_of(request), app, field_str(data, "label", required=False, max_len=128) or ""
    )
    return json_response(writekeys.key_dict(row, app, key), status=201)


@api.route("GET", KEYS, summary="List an app's write keys (no secrets)", tag="analytics", roles=ANALYST)
async def list_write_keys(request: web.Request) -> web.Response:
    app = request.match_info["app"]
    rows = await writekeys.list_keys(request.app[DB], app)
    return json_response({"items": [writekeys.key_dict(r, app) for r in rows]})


@api.route(
    "POST",
    KEYS + "/rotate",
    summary="Rotate: a new key; the others expire",
    tag="analytics",
    body=ROTATE_BODY,
    responses={201: "a new key; the others expire after grace_seconds"},
)
async def rotate_write_keys(request: web.Request) -> web.Response:
    data = await read_object(request)
    grace = data.get("grace_seconds", 7 * 86400)
    if not isinstance(grace, int) or isinstance(grace, bool):
        raise ValidationError("grace_seconds must be an integer")
    app = request.match_info["app"]
    label = field_str(data, "label", required=False, max_len=128) or ""
    new, key, old = await writekeys.rotate(
        request.app[DB], actor_of(request), app, grace_seconds=grace, label=label
    )
    request.app[ANALYTICS].write_keys.clear()
    return json_response(
        {"key": writekeys.key_dict(new, app, key), "expiring": [writekeys.key_dict(r, app) for r in old]},
        status=201,
    )


@api.route(
    "PUT",
    EVENTS + "/{name}",
    summary="Define (or replace) a tracking point",
    tag="analytics",
    roles=ANALYST,
    body=DEFINE_BODY,
    params={"name": EVENT_NAME},
    responses={200: "replaced", 201: "created"},
)
async def define_event(request: web.Request) -> web.Response:
    data = await read_object(request)
    app = request.match_info["app"]
    spec = catalog.parse_spec(request.match_info["name"], data)
    row, created = await catalog.define(request.app[DB], actor_of(request), app, spec)
    return json_response(catalog.definition_dict(row, app), status=201 if created else 200)


@api.route(
    "GET",
    EVENTS,
    summary="List an app's tracking points (builtin=true adds the built-in UX events)",
    tag="analytics",
    roles=ANALYST,
    query={**PAGE_QUERY, "builtin": "bool"},
)
async def list_events(request: web.Request) -> web.Response:
    limit, offset = pagination(request)
    app = request.match_info["app"]
    rows, total = await catalog.list_definitions(request.app[DB], app, limit=limit, offset=offset)
    out = page([catalog.definition_dict(r, app) for r in rows], total, limit, offset)
    if request.query.get("builtin", "false") == "true":
        out["builtin"] = catalog.builtin_list()
    return json_response(out)


@api.route(
    "GET",
    EVENTS + "/{name}",
    summary="Show a tracking point (a built-in one too)",
    tag="analytics",
    roles=ANALYST,
    params={"name": pattern_schema(catalog.NAME_RE)},
)
async def show_event(request: web.Request) -> web.Response:
    found = await catalog.get_definition(
        request.app[DB], request.match_info["app"], request.match_info["name"]
    )
    return json_response(found)


@api.route(
    "POST",
    "/api/v1/analytics/forget",
    summary="Forget a user: delete their events and identity links (PIPL)",
    tag="analytics",
    body=FORGET_BODY,
    responses={202: "recorded; the loader carries it out"},
)
async def forget_user(request: web.Request) -> web.Response:
    data = await read_object(request)
    user_id = field_str(data, "user_id", max_len=256) or ""
    app = field_str(data, "app", required=False, max_len=64)
    row = await forget.request(request.app[DB], actor_of(request), user_id, app)
    return json_response(forget.request_dict(row, app), status=202)


@api.route(
    "GET",
    "/api/v1/analytics/forget/{request_id}",
    summary="A forget request's state",
    tag="analytics",
    params={"request_id": ID_SCHEMA},
)
async def forget_status(request: web.Request) -> web.Response:
    request_id = path_id(request, "request_id")
    return json_response(await forget.get(request.app[DB], request_id))


@api.route(
    "GET",
    "/api/v1/analytics/status",
    summary="Spool kind, and the loader's counters if this process runs it",
    tag="analytics",
    roles=ANALYST,
)
async def analytics_status(request: web.Request) -> web.Response:
    rt = request.app[ANALYTICS]
    loader = rt.loader
    return json_response(
        {
            "spool": "jetstream" if rt.settings.nats_url else "files",
            "loader_here": loader is not None,
            "loader": vars(loader.stats) if loader is not None else None,
        }
    )
