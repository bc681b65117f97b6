"""Identity endpoints: apps, channels, deployment keys, tokens, the audit log and whoami."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from mpaas.appkeys import DB
from mpaas.errors import ValidationError
from mpaas.identity import audit, lifecycle, tenancy
from mpaas.identity.guard import actor_of, principal_of
from mpaas.identity.roles import ROLES
from mpaas.identity.tokens import create_token, list_tokens, revoke_token
from mpaas.storage.db import utcnow
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
    required_str,
)

api = Api()
NAME_SCHEMA = pattern_schema(tenancy.NAME_RE)
# An app or channel name in any path is checked by the same rule (then 404 if unknown).
api.share_params(app=NAME_SCHEMA, channel=NAME_SCHEMA)

APP_BODY = {
    "type": "object",
    "required": ["name", "platforms"],
    "properties": {
        "name": NAME_SCHEMA,
        "platforms": {"type": "array", "minItems": 1, "items": {"enum": list(tenancy.PLATFORMS)}},
        "require_signing": {"type": "boolean", "description": "refuse publishes while it has no TUF keys"},
    },
}
APP_PATCH = {
    "type": "object",
    "minProperties": 1,
    "additionalProperties": False,
    "properties": {"name": NAME_SCHEMA, "require_signing": {"type": "boolean"}},
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
    name = required_str(data, "name", max_len=63)
    platforms = data.get("platforms") or []
    if not isinstance(platforms, list) or not all(isinstance(p, str) for p in platforms):
        raise ValidationError("field 'platforms' must be a list of strings")
    require_signing = lifecycle.check_bool(data.get("require_signing", False), "require_signing")
    db, actor = request.app[DB], actor_of(request)
    app, channels = await tenancy.create_app(db, actor, name, platforms)
    if require_signing:
        app = await lifecycle.set_require_signing(db, actor, name, True)
    out = tenancy.app_dict(app) | {"channels": [tenancy.channel_dict(c, app.name) for c in channels]}
    return json_response(out, status=201)


@api.route(
    "GET",
    "/api/v1/apps",
    summary="List apps",
    tag="apps",
    roles=("release-manager", "analyst", "push-operator"),
    query=PAGE_QUERY,
)
async def list_apps_handler(request: web.Request) -> web.Response:
    limit, offset = pagination(request)
    scope = principal_of(request).apps
    rows, total = await tenancy.list_apps(request.app[DB], limit=limit, offset=offset, only=scope)
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
    "PATCH",
    "/api/v1/apps/{app}",
    summary="Rename an app, or change whether it requires signing",
    tag="apps",
    roles=("admin",),
    body=APP_PATCH,
    responses={409: "the new name exists, or the app has TUF keys (no rename)"},
)
async def update_app_handler(request: web.Request) -> web.Response:
    data = await read_object(request)
    db, actor = request.app[DB], actor_of(request)
    name = request.match_info["app"]
    new_name = field_str(data, "name", required=False, max_len=63)
    unknown = sorted(set(data) - {"name", "require_signing"})
    if unknown or (new_name is None and "require_signing" not in data):
        raise ValidationError("give 'name' (a rename) or 'require_signing', and nothing else")
    if "require_signing" in data:
        await lifecycle.set_require_signing(
            db, actor, name, lifecycle.check_bool(data["require_signing"], "require_signing")
        )
    if new_name is not None:
        await lifecycle.rename_app(db, actor, name, new_name)
        name = new_name
    return json_response(tenancy.app_dict(await tenancy.get_app(db, name)))


@api.route(
    "DELETE",
    "/api/v1/apps/{app}",
    summary="Delete an app with nothing in it (its channels and deployment keys go with it)",
    tag="apps",
    roles=("admin",),
    responses={409: "the app still holds packages, releases, devices or other data"},
)
async def delete_app_handler(request: web.Request) -> web.Response:
    app = await lifecycle.delete_app(request.app[DB], actor_of(request), request.match_info["app"])
    return json_response(tenancy.app_dict(app) | {"deleted": True})


@api.route(
    "DELETE",
    "/api/v1/apps/{app}/channels/{channel}",
    summary="Delete a channel that has no releases (its deployment key stops working)",
    tag="apps",
    roles=("admin",),
    responses={409: "the channel has releases"},
)
async def delete_channel_handler(request: web.Request) -> web.Response:
    app, channel = request.match_info["app"], request.match_info["channel"]
    row = await lifecycle.delete_channel(request.app[DB], actor_of(request), app, channel)
    return json_response(tenancy.channel_dict(row, app) | {"deleted": True})


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
    body={"type": "object", "required": ["name"], "properties": {"name": NAME_SCHEMA}},
    responses={201: "created", 409: "exists"},
)
async def create_channel_handler(request: web.Request) -> web.Response:
    data = await read_object(request)
    name = required_str(data, "name", max_len=63)
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
        "role": {"enum": list(ROLES)},
        "name": {"type": "string", "maxLength": 128},
        "expires_in_seconds": {"type": "integer", "minimum": 60, "maximum": 3660 * 86_400},
        "expires_at": {"type": "string", "format": "date-time", "maxLength": 64},
        "apps": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "items": NAME_SCHEMA,
            "description": "limit the token to these apps (default: every app)",
        },
    },
    # one or the other, or neither (a token that never expires)
    "not": {"required": ["expires_in_seconds", "expires_at"]},
}


def token_dict(row: object) -> dict[str, object]:
    keys = (
        "id",
        "name",
        "role",
        "prefix",
        "created_by",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
        "apps",
    )
    return {k: getattr(row, k) for k in keys}


def token_apps(data: dict[str, Any]) -> list[str] | None:
    apps = data.get("apps")
    if apps is None:
        return None
    if not isinstance(apps, list) or not apps or len(apps) > 100 or not all(isinstance(a, str) for a in apps):
        raise ValidationError("field 'apps' must be a list of 1 to 100 app names")
    return [tenancy.check_name("app", a) for a in apps]


def token_expiry(data: dict[str, Any]) -> datetime | None:
    """``expires_in_seconds`` (an integer) or ``expires_at`` (ISO 8601 with an offset), not both."""
    seconds, at = data.get("expires_in_seconds"), data.get("expires_at")
    if seconds is not None and at is not None:
        raise ValidationError("give expires_in_seconds or expires_at, not both")
    if seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            raise ValidationError("field 'expires_in_seconds' must be an integer")
        if not 60 <= seconds <= 3660 * 86_400:
            raise ValidationError("field 'expires_in_seconds' must be between 60 and 316224000 (ten years)")
        return utcnow() + timedelta(seconds=seconds)
    if at is None:
        return None
    if not isinstance(at, str) or len(at) > 64:
        raise ValidationError("field 'expires_at' must be an ISO 8601 time such as 2027-01-31T00:00:00Z")
    try:
        parsed = datetime.fromisoformat(at)
    except ValueError:
        raise ValidationError(
            "field 'expires_at' must be an ISO 8601 time such as 2027-01-31T00:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        raise ValidationError("field 'expires_at' needs a UTC offset, e.g. 2027-01-31T00:00:00Z")
    return parsed.astimezone(UTC)


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
    role = required_str(data, "role", max_len=32)
    name = field_str(data, "name", required=False, max_len=128) or f"{role}-token"
    expires_at = token_expiry(data)
    row, secret = await create_token(
        request.app[DB], actor_of(request), name=name, role=role, expires_at=expires_at, apps=token_apps(data)
    )
    return json_response(token_dict(row) | {"token": secret}, status=201)


@api.route(
    "GET", "/api/v1/tokens", summary="List API tokens (never their secrets)", tag="tokens", roles=("admin",)
)
async def list_tokens_handler(request: web.Request) -> web.Response:
    rows = await list_tokens(request.app[DB])
    return json_response({"items": [token_dict(r) for r in rows]})


@api.route(
    "DELETE",
    "/api/v1/tokens/{token_id}",
    summary="Revoke an API token",
    tag="tokens",
    roles=("admin",),
    params={"token_id": ID_SCHEMA},
)
async def revoke_token_handler(request: web.Request) -> web.Response:
    row = await revoke_token(request.app[DB], actor_of(request), path_id(request, "token_id"))
    return json_response(token_dict(row))


@api.route(
    "GET",
    "/api/v1/audit",
    summary="Read the audit log, newest first",
    tag="audit",
    roles=("admin",),
    query={"app": "string", "action": "string", **PAGE_QUERY},
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
    apps = list(p.apps) if p.apps is not None else None
    return json_response(
        {"id": p.token_id, "name": p.name, "role": p.role, "expires_at": p.expires_at, "apps": apps}
    )
