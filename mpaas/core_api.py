"""Core HTTP endpoints: health, metrics, OpenAPI, apps, channels, tokens and audit."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mpaas import audit, tenancy
from mpaas.appkeys import BLOBS, DB, GC_SOURCES, METRICS, SETTINGS
from mpaas.audit import Actor
from mpaas.auth import create_token, list_tokens, principal_of, revoke_token
from mpaas.errors import Unauthorized, ValidationError
from mpaas.http import Api, field_str, json_response, page, pagination, read_object
from mpaas.logs import request_id_var

api = Api()


def actor_of(request: web.Request) -> Actor:
    return Actor(principal_of(request).actor, request_id_var.get())


@api.route(
    "GET",
    "/healthz",
    summary="Liveness and readiness: checks the database and the blob store",
    tag="operations",
    auth="public",
    responses={200: "healthy", 503: "a dependency is down"},
)
async def healthz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    ok = True
    for name, probe in (("database", request.app[DB].ping()), ("blobs", request.app[BLOBS].check())):
        try:
            await asyncio.wait_for(probe, timeout=5)
            checks[name] = "ok"
        except Exception as exc:
            ok = False
            checks[name] = f"error: {type(exc).__name__}"
    return json_response(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )


@api.route("GET", "/metrics", summary="Prometheus metrics (text format)", tag="operations", auth="metrics")
async def metrics(request: web.Request) -> web.Response:
    expected = request.app[SETTINGS].metrics_token
    if expected:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthorized("metrics need the configured bearer token", code="invalid_token")
    body = generate_latest(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@api.route(
    "GET", "/api/openapi.json", summary="This API's OpenAPI 3.1 document", tag="operations", auth="public"
)
async def openapi_doc(request: web.Request) -> web.Response:
    from mpaas.openapi import build_openapi

    return json_response(build_openapi(request.app))


APP_BODY = {
    "type": "object",
    "required": ["name", "platforms"],
    "properties": {
        "name": {"type": "string", "pattern": tenancy.NAME_RE.pattern},
        "platforms": {"type": "array", "items": {"enum": list(tenancy.PLATFORMS)}},
    },
}


@api.route(
    "POST",
    "/api/v1/apps",
    summary="Create an app with staging and production channels",
    tag="apps",
    roles=("admin",),
    body=APP_BODY,
    responses={201: "created", 409: "exists"},
)
async def create_app_handler(request: web.Request) -> web.Response:
    data = await read_object(request)
    name = field_str(data, "name", max_len=63)
    platforms = data.get("platforms") or []
    if not isinstance(platforms, list) or not all(isinstance(p, str) for p in platforms):
        raise ValidationError("field 'platforms' must be a list of strings")
    assert name is not None
    app, channels = await tenancy.create_app(request.app[DB], actor_of(request), name, platforms)
    out = tenancy.app_dict(app) | {"channels": [tenancy.channel_dict(c, app.name) for c in channels]}
    return json_response(out, status=201)


@api.route(
    "GET",
    "/api/v1/apps",
    summary="List apps",
    tag="apps",
    roles=("release-manager", "analyst", "push-operator"),
    query={"limit": "int", "offset": "int"},
)
async def list_apps_handler(request: web.Request) -> web.Response:
    limit, offset = pagination(request)
    rows, total = await tenancy.list_apps(request.app[DB], limit=limit, offset=offset)
    return json_response(page([tenancy.app_dict(a) for a in rows], total, limit, offset))


@api.route(
    "GET",
    "/api/v1/apps/{app}",
    summary="Show an app",
    tag="apps",
    roles=("release-manager", "analyst", "push-operator"),
)
async def show_app_handler(request: web.Request) -> web.Response:
    app = await tenancy.get_app(request.app[DB], request.match_info["app"])
    return json_response(tenancy.app_dict(app))


@api.route(
    "GET",
    "/api/v1/apps/{app}/channels",
    summary="List an app's channels with their deployment keys",
    tag="apps",
    roles=("release-manager",),
)
async def list_channels_handler(request: web.Request) -> web.Response:
    name = request.match_info["app"]
    rows = await tenancy.list_channels(request.app[DB], name)
    return json_response({"items": [tenancy.channel_dict(c, name) for c in rows]})


@api.route(
    "POST",
    "/api/v1/apps/{app}/channels",
    summary="Create a channel",
    tag="apps",
    roles=("admin",),
    body={"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
    responses={201: "created"},
)
async def create_channel_handler(request: web.Request) -> web.Response:
    data = await read_object(request)
    name = field_str(data, "name", max_len=63)
    assert name is not None
    app = request.match_info["app"]
    row = await tenancy.create_channel(request.app[DB], actor_of(request), app, name)
    return json_response(tenancy.channel_dict(row, app), status=201)


@api.route(
    "POST",
    "/api/v1/apps/{app}/channels/{channel}/rotate-key",
    summary="Replace a channel's deployment key",
    tag="apps",
    roles=("admin",),
)
async def rotate_key_handler(request: web.Request) -> web.Response:
    app, channel = request.match_info["app"], request.match_info["channel"]
    row = await tenancy.rotate_deployment_key(request.app[DB], actor_of(request), app, channel)
    return json_response(tenancy.channel_dict(row, app))


TOKEN_BODY = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"enum": ["admin", "release-manager", "analyst", "push-operator"]},
        "name": {"type": "string"},
    },
}


def token_dict(row: object) -> dict[str, object]:
    keys = ("id", "name", "role", "prefix", "created_by", "created_at", "revoked_at", "last_used_at")
    return {k: getattr(row, k) for k in keys}


@api.route(
    "POST",
    "/api/v1/tokens",
    summary="Create an API token; the secret is shown once",
    tag="tokens",
    roles=("admin",),
    body=TOKEN_BODY,
    responses={201: "created"},
)
async def create_token_handler(request: web.Request) -> web.Response:
    data = await read_object(request)
    role = field_str(data, "role", max_len=32)
    name = field_str(data, "name", required=False, max_len=128) or f"{role}-token"
    assert role is not None
    row, secret = await create_token(request.app[DB], actor_of(request), name=name, role=role)
    return json_response(token_dict(row) | {"token": secret}, status=201)


@api.route(
    "GET", "/api/v1/tokens", summary="List API tokens (never their secrets)", tag="tokens", roles=("admin",)
)
async def list_tokens_handler(request: web.Request) -> web.Response:
    rows = await list_tokens(request.app[DB])
    return json_response({"items": [token_dict(r) for r in rows]})


@api.route(
    "DELETE", "/api/v1/tokens/{token_id}", summary="Revoke an API token", tag="tokens", roles=("admin",)
)
async def revoke_token_handler(request: web.Request) -> web.Response:
    try:
        token_id = int(request.match_info["token_id"])
    except ValueError:
        raise ValidationError("token id must be an integer") from None
    row = await revoke_token(request.app[DB], actor_of(request), token_id)
    return json_response(token_dict(row))


@api.route(
    "GET",
    "/api/v1/audit",
    summary="Read the audit log, newest first",
    tag="audit",
    roles=("admin",),
    query={"app": "string", "action": "string", "limit": "int", "offset": "int"},
)
async def audit_handler(request: web.Request) -> web.Response:
    limit, offset = pagination(request)
    rows, total = await audit.list_entries(
        request.app[DB],
        app=request.query.get("app"),
        action=request.query.get("action"),
        limit=limit,
        offset=offset,
    )
    return json_response(page([r.model_dump() for r in rows], total, limit, offset))


@api.route(
    "GET",
    "/api/v1/whoami",
    summary="The calling token's name and role",
    tag="tokens",
    roles=("release-manager", "analyst", "push-operator"),
)
async def whoami_handler(request: web.Request) -> web.Response:
    p = principal_of(request)
    return json_response({"id": p.token_id, "name": p.name, "role": p.role})


@api.route(
    "POST",
    "/api/v1/gc",
    summary="Delete blobs that nothing references (older than grace_seconds)",
    tag="operations",
    roles=("admin",),
    body={
        "type": "object",
        "properties": {"dry_run": {"type": "boolean"}, "grace_seconds": {"type": "integer", "minimum": 0}},
    },
)
async def gc_handler(request: web.Request) -> web.Response:
    from datetime import timedelta

    from mpaas.gc import DEFAULT_GRACE, collect_garbage

    data = await read_object(request) if request.can_read_body else {}
    dry_run = data.get("dry_run", False)
    grace = data.get("grace_seconds", int(DEFAULT_GRACE.total_seconds()))
    if not isinstance(dry_run, bool) or not isinstance(grace, int) or grace < 0:
        raise ValidationError("dry_run must be a boolean and grace_seconds a non-negative integer")
    sources: list[Any] = request.app[GC_SOURCES]
    report = await collect_garbage(
        request.app[DB],
        request.app[BLOBS],
        sources,
        actor_of(request),
        grace=timedelta(seconds=grace),
        dry_run=dry_run,
    )
    return json_response(report.to_dict())
