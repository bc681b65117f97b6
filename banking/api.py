"""HTTP API of the banking domain: operations and catalogues (admin), users' in-branch
verification and sessions (admin), and ``GET /client/v1/catalog`` for apps.

The gateway call itself, ``POST /gateway``, belongs to :mod:`mpaas.gateway.api`.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from mpaas.appkeys import DB
from mpaas.banking.catalog.service import parse_yaml
from mpaas.banking.operations.registry import UpstreamFields, spec_dict
from mpaas.banking.service import BANKING
from mpaas.banking.users.service import user_dict
from mpaas.banking.users.tiers import VISITOR
from mpaas.errors import NotFound, Unauthorized, ValidationError
from mpaas.gateway.signing import DEVICE_RE, H_DEVICE, H_SESSION, SESSION_RE
from mpaas.identity.guard import actor_of
from mpaas.identity.tenancy import resolve_deployment_key
from mpaas.web.api import (
    Api,
    deployment_key_header,
    field_str,
    json_response,
    pattern_schema,
    read_json,
    read_object,
)
from mpaas.web.downloads import etag_matches

api = Api()
OPS = "/api/v1/operations"
ONE_OP = OPS + "/{name}/{version}"
USER = "/api/v1/apps/{app}/bank-users/{user_id}"
READERS = ("release-manager", "analyst")
KEY_HEADER = "X-Deployment-Key"
APP_VERSION_RE = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9}){0,2}")

UPSTREAM_BODY = {
    "type": "object",
    "required": ["name", "version", "url"],
    "properties": {
        "name": {
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "description": "such as com.bank.fx.quote",
        },
        "version": {"type": "integer", "minimum": 1, "maximum": 9999},
        "url": {"type": "string", "format": "uri"},
        "input_schema": {"type": "object", "description": "JSON Schema subset (docs/banking.md)"},
        "min_tier": {"enum": ["visitor", "registered", "e_account", "full"]},
        "session_required": {"type": "boolean"},
        "rate": {"type": "string", "description": "token bucket per caller, such as 10/m"},
        "idempotent": {"type": "boolean"},
        "timeout_seconds": {"type": "number"},
        "summary": {"type": "string"},
    },
}


def _op_key(request: web.Request) -> tuple[str, int]:
    version = request.match_info["version"]
    if re.fullmatch(r"[1-9][0-9]{0,3}", version) is None:
        raise ValidationError("the version must be an integer from 1 to 9999")
    return request.match_info["name"], int(version)


def _bool(data: dict[str, Any], name: str, default: bool) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise ValidationError(f"field {name!r} must be true or false")
    return value


@api.route("GET", OPS, summary="List operations", tag="operations", roles=READERS)
async def list_operations(request: web.Request) -> web.Response:
    registry = request.app[BANKING].registry
    items = [spec_dict(registry, s) for s in registry.all()]
    return json_response({"items": items, "failed_plugins": registry.failed_plugins})


@api.route(
    "POST",
    OPS,
    summary="Add an upstream operation; its upstream secret is shown once",
    tag="operations",
    roles=("admin",),
    body=UPSTREAM_BODY,
    responses={201: "added", 409: "exists"},
)
async def add_operation(request: web.Request) -> web.Response:
    data = await read_object(request)
    version, timeout = data.get("version"), data.get("timeout_seconds")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValidationError("field 'version' must be an integer")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)):
        raise ValidationError("field 'timeout_seconds' must be a number")
    schema = data.get("input_schema") or {}
    if not isinstance(schema, dict):
        raise ValidationError("field 'input_schema' must be an object")
    fields = UpstreamFields(
        name=field_str(data, "name", max_len=255) or "",
        version=version,
        url=field_str(data, "url", max_len=2048) or "",
        input_schema=schema,
        min_tier=field_str(data, "min_tier", required=False, max_len=16) or "registered",
        session_required=_bool(data, "session_required", True),
        rate=field_str(data, "rate", required=False, max_len=16),
        idempotent=_bool(data, "idempotent", False),
        timeout_seconds=float(timeout) if timeout is not None else None,
        summary=field_str(data, "summary", required=False, max_len=256) or "",
    )
    banking = request.app[BANKING]
    spec = await banking.registry.add_upstream(actor_of(request), fields)
    secret = banking.upstreams.secret(spec.name).hex()
    return json_response(
        spec_dict(banking.registry, spec, detail=True) | {"upstream_secret": secret}, status=201
    )


@api.route("GET", ONE_OP, summary="Show an operation with its schemas", tag="operations", roles=READERS)
async def show_operation(request: web.Request) -> web.Response:
    name, version = _op_key(request)
    registry = request.app[BANKING].registry
    spec = registry.get(name, version)
    if spec is None:
        raise NotFound(f"operation {name} v{version} not found", code="operation_not_found")
    return json_response(spec_dict(registry, spec, detail=True))


async def _switch(request: web.Request, enabled: bool) -> web.Response:
    name, version = _op_key(request)
    registry = request.app[BANKING].registry
    spec = await registry.set_enabled(actor_of(request), name, version, enabled)
    return json_response(spec_dict(registry, spec))


@api.route("POST", ONE_OP + "/disable", summary="Disable an operation (3000 to callers)", tag="operations")
async def disable_operation(request: web.Request) -> web.Response:
    return await _switch(request, False)


@api.route("POST", ONE_OP + "/enable", summary="Enable an operation", tag="operations")
async def enable_operation(request: web.Request) -> web.Response:
    return await _switch(request, True)


@api.route(
    "DELETE", ONE_OP, summary="Remove an upstream operation", tag="operations", responses={204: "removed"}
)
async def remove_operation(request: web.Request) -> web.Response:
    name, version = _op_key(request)
    await request.app[BANKING].registry.remove_upstream(actor_of(request), name, version)
    return web.Response(status=204)


@api.route(
    "PUT",
    "/api/v1/apps/{app}/catalog",
    summary="Publish a new catalogue version (JSON, or YAML with Content-Type application/yaml)",
    tag="catalog",
    roles=("admin", "release-manager"),
    raw_body="application/json, application/yaml",
    responses={201: "published"},
)
async def put_catalog(request: web.Request) -> web.Response:
    if request.content_type in ("application/yaml", "application/x-yaml", "text/yaml"):
        data = parse_yaml(await request.read())
    else:
        data = await read_json(request)
    app = request.match_info["app"]
    version, doc = await request.app[BANKING].catalog.publish(actor_of(request), app, data)
    return json_response(
        {"app": app, "version": version, "document": doc.model_dump(mode="json")}, status=201
    )


@api.route("GET", "/api/v1/apps/{app}/catalog", summary="The current catalogue", tag="catalog", roles=READERS)
async def get_catalog(request: web.Request) -> web.Response:
    app = request.match_info["app"]
    banking = request.app[BANKING]
    version, doc = await banking.catalog.current(await banking.users.app_id(app))
    return json_response({"app": app, "version": version, "document": doc.model_dump(mode="json")})


@api.route(
    "GET", "/api/v1/apps/{app}/catalog/versions", summary="Catalogue versions", tag="catalog", roles=READERS
)
async def catalog_versions(request: web.Request) -> web.Response:
    return json_response({"items": await request.app[BANKING].catalog.versions(request.match_info["app"])})


@api.route(
    "GET",
    "/client/v1/catalog",
    summary="The catalogue for this app, the session's tier (visitor without one), platform and app version",
    tag="catalog",
    auth="client",
    query={"platform": {"enum": ["ios", "android"]}, "app_version": pattern_schema(APP_VERSION_RE)},
    responses={200: "catalogue (ETag)", 304: "unchanged", 401: "bad deployment key or session"},
)
async def client_catalog(request: web.Request) -> web.StreamResponse:
    ref = await resolve_deployment_key(request.app[DB], deployment_key_header(request) or "")
    if ref is None:
        raise Unauthorized(f"a valid {KEY_HEADER} header is required", code="invalid_deployment_key")
    banking, app = request.app[BANKING], ref.app.name
    tier = VISITOR
    token, device = request.headers.get(H_SESSION, ""), request.headers.get(H_DEVICE, "")
    if token:
        if SESSION_RE.fullmatch(token) is None or DEVICE_RE.fullmatch(device) is None:
            raise Unauthorized("the session is invalid or has expired", code="invalid_session")
        # An unsigned request cannot prove the device key, so a key-bound session is refused here.
        who = await banking.sessions.resolve(app, device, token, None)
        if who is None:
            raise Unauthorized(
                "the session is invalid, expired, or bound to a device key (call mpaas.catalog.get "
                "through the gateway)",
                code="invalid_session",
            )
        tier = who.tier
    platform = request.query.get("platform")
    if platform is not None and platform not in ("ios", "android"):
        raise ValidationError("platform must be ios or android")
    version = request.query.get("app_version")
    if version is not None and APP_VERSION_RE.fullmatch(version) is None:
        raise ValidationError("app_version must be a version such as 2.3.1")
    assert ref.app.id is not None
    body, etag = await banking.catalog.view(ref.app.id, app, tier, platform, version)
    headers = {
        "ETag": etag,
        "Cache-Control": "private, no-cache",
        "Vary": f"{H_SESSION}, {KEY_HEADER}, X-Mpaas-Deployment-Key",
    }
    if etag_matches(request, etag):
        return web.Response(status=304, headers=headers)
    return json_response(body, headers=headers)


@api.route(
    "GET", USER, summary="A bank user: profile, tier history, sessions", tag="banking", roles=("admin",)
)
async def show_user(request: web.Request) -> web.Response:
    users = request.app[BANKING].users
    user = await users.find(request.match_info["app"], request.match_info["user_id"])
    assert user.id is not None
    history = [e.model_dump(exclude={"id", "user_pk"}) for e in await users.history(user)]
    sessions = [
        s.model_dump(
            include={
                "id",
                "device_id",
                "device_kid",
                "created_at",
                "expires_at",
                "revoked_at",
                "revoked_reason",
            }
        )
        for s in await users.sessions.list_for_user(user.id)
    ]
    return json_response(user_dict(user) | {"tier_history": history, "sessions": sessions})


@api.route(
    "POST",
    USER + "/branch-verification",
    summary="Set or clear the in-branch verification flag (lets an e-account holder become a full customer)",
    tag="banking",
    roles=("admin",),
    body={
        "type": "object",
        "properties": {"verified": {"type": "boolean"}, "note": {"type": "string", "maxLength": 200}},
    },
)
async def branch_verification(request: web.Request) -> web.Response:
    data = await read_object(request)
    note = field_str(data, "note", required=False, max_len=200) or ""
    user = await request.app[BANKING].users.set_branch_verified(
        actor_of(request),
        request.match_info["app"],
        request.match_info["user_id"],
        _bool(data, "verified", True),
        note,
    )
    return json_response(user_dict(user))


@api.route(
    "POST",
    USER + "/revoke-sessions",
    summary="Revoke all of a user's sessions",
    tag="banking",
    roles=("admin",),
)
async def revoke_sessions(request: web.Request) -> web.Response:
    await request.app[BANKING].users.revoke_sessions(
        actor_of(request), request.match_info["app"], request.match_info["user_id"]
    )
    return json_response({"revoked": True})
