"""HTTP API of the push domain: device registration, the WebSocket channel, receipts (client);
messages, statistics and per-app settings (admin, role push-operator).

Client calls identify the app by a channel's deployment key (``X-Deployment-Key``, or the
older ``X-Mpaas-Deployment-Key``, or ``deployment_key`` in the body) and the device by
``X-Mpaas-Device-Id`` plus the secret returned at registration (``X-Mpaas-Device-Secret``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mpaas.appkeys import DB, SETTINGS
from mpaas.errors import ValidationError
from mpaas.identity import tenancy
from mpaas.identity.guard import actor_of
from mpaas.identity.models import App
from mpaas.push import devices, messages, receipts, stats, ws
from mpaas.push.models import FALLBACKS, PROVIDERS
from mpaas.push.service_key import PUSH
from mpaas.storage.db import utcnow
from mpaas.web.api import (
    ID_SCHEMA,
    PAGE_QUERY,
    Api,
    deployment_key_header,
    json_response,
    page,
    pagination,
    path_id,
    pattern_schema,
    read_object,
    refuse_oversized,
)


def _object_of(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": [key], "properties": {key: schema}, "additionalProperties": False}


api = Api()
OPS = ("push-operator",)
BASE = "/api/v1/apps/{app}/push"
DEVICE_HEADER, SECRET_HEADER = "X-Mpaas-Device-Id", "X-Mpaas-Device-Secret"
#: Body limits of the client routes (docs/protocol.md): a registration is a token and up
#: to 50 tags; a receipts batch is up to 500 short objects; the rest take no body.
DEVICE_LIMIT = 16 * 1024
RECEIPTS_LIMIT = 64 * 1024
NO_BODY_LIMIT = 4 * 1024

_DEVICE_ID = pattern_schema(devices.DEVICE_ID_RE)
_TAG = pattern_schema(devices.TAG_RE)
_LOCALE = pattern_schema(devices.LOCALE_RE, maxLength=35)
DEVICE_BODY = {
    "type": "object",
    "required": ["device_id", "provider"],
    "properties": {
        "deployment_key": {"type": "string", "description": "or the X-Deployment-Key header"},
        "device_id": _DEVICE_ID,
        "provider": {"enum": list(PROVIDERS)},
        "token": {"type": "string", "description": "APNs device token (hex) or FCM registration token"},
        "user_id": {"type": "string", "maxLength": 128},
        "tags": {"type": "array", "maxItems": devices.MAX_TAGS, "items": _TAG},
        "locale": _LOCALE,
        "app_version": {"type": "string", "maxLength": 64},
        "os": {"type": "string", "maxLength": 64},
    },
    # APNs and FCM need their token, in their format; the WebSocket channel takes none.
    "allOf": [
        {
            "if": {"required": ["provider"], "properties": {"provider": {"const": "apns"}}},
            "then": {"required": ["token"], "properties": {"token": pattern_schema(devices.APNS_TOKEN_RE)}},
        },
        {
            "if": {"required": ["provider"], "properties": {"provider": {"const": "fcm"}}},
            "then": {"required": ["token"], "properties": {"token": pattern_schema(devices.FCM_TOKEN_RE)}},
        },
        {
            "if": {"required": ["provider"], "properties": {"provider": {"const": "ws"}}},
            "then": {"not": {"required": ["token"]}},
        },
    ],
}
RECEIPTS_BODY = {
    "type": "object",
    "required": ["receipts"],
    "properties": {
        "receipts": {
            "type": "array",
            "minItems": 1,
            "maxItems": receipts.MAX_RECEIPTS,
            "items": {
                "type": "object",
                "required": ["delivery_id", "type"],
                "properties": {
                    "delivery_id": {
                        "type": "string",
                        "pattern": "^[1-9][0-9]{0,17}$",
                        "description": "the id from the notification payload",
                    },
                    "type": {"enum": list(receipts.RECEIPT_KINDS)},
                },
            },
        }
    },
}
_AUDIENCE_VALUES = {"type": "array", "minItems": 1, "maxItems": messages.MAX_AUDIENCE_VALUES}
_TEXT = {"type": "string", "maxLength": 2048}
_USER_ID = {"type": "string", "minLength": 1, "maxLength": 128}
MESSAGE_BODY = {
    "type": "object",
    "required": ["audience"],
    "properties": {
        "audience": {
            "oneOf": [
                _object_of("devices", _AUDIENCE_VALUES | {"items": _DEVICE_ID}),
                _object_of("users", _AUDIENCE_VALUES | {"items": _USER_ID}),
                _object_of("tags", _AUDIENCE_VALUES | {"items": _TAG}),
                _object_of("all", {"const": True}),
            ],
        },
        "title": {"type": "string", "maxLength": 256},
        "body": _TEXT,
        "locales": {
            "type": "object",
            "maxProperties": 50,
            "propertyNames": _LOCALE,
            "additionalProperties": {"type": "object", "properties": {"title": _TEXT, "body": _TEXT}},
            "description": '{"de": {"title": "...", "body": "..."}}',
        },
        "data": {
            "type": "object",
            "maxProperties": messages.MAX_DATA_KEYS,
            "propertyNames": {"not": {"pattern": "^(?:aps$|mpaas)"}},
            "additionalProperties": {"type": "string"},
        },
        "ttl": {"type": "integer", "minimum": 0, "maximum": messages.MAX_TTL, "description": "seconds"},
        "priority": {"enum": ["high", "normal"]},
        "push_type": {"enum": ["alert", "background"]},
        "collapse_id": {"type": "string", "maxLength": 64},
        "send_at": {"type": "string", "format": "date-time", "description": "at most 60 days ahead"},
        "fallback": {"enum": list(FALLBACKS)},
        "ack_timeout": {
            "type": "integer",
            "minimum": 1,
            "maximum": messages.MAX_ACK_TIMEOUT,
            "description": "seconds before the fallback",
        },
    },
    # An alert needs something to show.
    "anyOf": [
        {"required": ["push_type"], "properties": {"push_type": {"const": "background"}}},
        {"required": ["title"]},
        {"required": ["body"]},
        {"required": ["locales"], "properties": {"locales": {"minProperties": 1}}},
    ],
}
SETTINGS_BODY = {
    "type": "object",
    "properties": {
        "fallback": {"enum": list(FALLBACKS)},
        "ack_timeout": {"type": "integer", "minimum": 1, "maximum": messages.MAX_ACK_TIMEOUT},
    },
}
MESSAGE_PARAMS = {"message_id": ID_SCHEMA}


async def _client_app(request: web.Request, body: dict[str, Any] | None = None) -> App:
    key = deployment_key_header(request) or (body or {}).get("deployment_key")
    if key is not None and not isinstance(key, str):
        raise ValidationError("deployment_key must be a string")
    return await devices.app_for_key(request.app[DB], key)


async def _device(request: web.Request, app: App) -> Any:
    return await devices.authenticate(
        request.app[DB], app, request.headers.get(DEVICE_HEADER), request.headers.get(SECRET_HEADER)
    )


@api.route(
    "POST",
    "/client/v1/devices",
    summary="Register or refresh a device for push; the first registration returns its device secret",
    tag="push",
    auth="client",
    body=DEVICE_BODY,
    responses={201: "registered (device_secret shown once)", 200: "refreshed", 401: "wrong device secret"},
)
async def register_device(request: web.Request) -> web.Response:
    data = await read_object(request, DEVICE_LIMIT)
    app = await _client_app(request, data)
    spec = devices.parse_device_spec(data)
    reg = await devices.register(request.app[DB], app, spec, request.headers.get(SECRET_HEADER))
    out = devices.device_dict(reg.device, reg.tags)
    if reg.secret is not None:
        out["device_secret"] = reg.secret
    return json_response(out, status=201 if reg.created else 200)


@api.route(
    "DELETE",
    "/client/v1/devices/{device_id}",
    summary="Unregister a device (needs its device secret)",
    tag="push",
    auth="client",
    responses={204: "unregistered"},
    params={"device_id": _DEVICE_ID},
)
async def unregister_device(request: web.Request) -> web.Response:
    refuse_oversized(request, NO_BODY_LIMIT)
    app = await _client_app(request)
    await devices.unregister(
        request.app[DB], app, request.match_info["device_id"], request.headers.get(SECRET_HEADER)
    )
    return web.Response(status=204)


@api.route(
    "GET",
    "/client/v1/push/ws",
    summary="The self-built push channel (WebSocket; device id and secret in headers)",
    tag="push",
    auth="client",
    responses={101: "switching protocols"},
)
async def push_socket(request: web.Request) -> web.StreamResponse:
    refuse_oversized(request, NO_BODY_LIMIT)
    app = await _client_app(request)
    device = await _device(request, app)
    service = request.app[PUSH]
    return await ws.serve(request, service.db, service.hub, device.id, device.locale)


@api.route(
    "POST",
    "/client/v1/push/receipts",
    summary="Report that notifications arrived or were opened (idempotent)",
    tag="push",
    auth="client",
    body=RECEIPTS_BODY,
)
async def post_receipts(request: web.Request) -> web.Response:
    data = await read_object(request, RECEIPTS_LIMIT)
    app = await _client_app(request, data)
    device = await _device(request, app)
    items = receipts.parse_receipts(data.get("receipts"))
    result = await receipts.record_receipts(request.app[DB], device.id, items, utcnow())
    return json_response(
        {"accepted": [str(i) for i in result.accepted], "unknown": [str(i) for i in result.unknown]}
    )


def _message_id(request: web.Request) -> int:
    return path_id(request, "message_id")


async def _message_out(request: web.Request, message: Any, app_name: str) -> dict[str, Any]:
    return messages.message_dict(message, app_name) | {
        "stats": await stats.message_stats(request.app[DB], message.id)
    }


@api.route(
    "POST",
    BASE + "/messages",
    summary="Send (or schedule) a push message",
    tag="push",
    roles=OPS,
    body=MESSAGE_BODY,
    responses={202: "queued; `warnings` lists what will keep it from some or all devices"},
)
async def send_message(request: web.Request) -> web.Response:
    db = request.app[DB]
    app = await tenancy.get_app(db, request.match_info["app"])
    spec = messages.parse_message_spec(await read_object(request))
    message = await messages.create_message(db, actor_of(request), app, spec)
    request.app[PUSH].queued()
    channels = messages.configured_channels(request.app[SETTINGS])
    warnings = await messages.send_warnings(db, message, channels)
    return json_response(messages.message_dict(message, app.name) | {"warnings": warnings}, status=202)


@api.route(
    "GET",
    BASE + "/messages",
    summary="List an app's push messages, newest first",
    tag="push",
    roles=OPS,
    query=PAGE_QUERY,
)
async def list_messages(request: web.Request) -> web.Response:
    db = request.app[DB]
    app = await tenancy.get_app(db, request.match_info["app"])
    limit, offset = pagination(request)
    rows, total = await messages.list_messages(db, app, limit=limit, offset=offset)
    return json_response(page([messages.message_dict(m, app.name) for m in rows], total, limit, offset))


@api.route(
    "GET",
    BASE + "/messages/{message_id}",
    summary="A push message with its delivery statistics",
    tag="push",
    roles=OPS,
    params=MESSAGE_PARAMS,
)
async def show_message(request: web.Request) -> web.Response:
    db = request.app[DB]
    app = await tenancy.get_app(db, request.match_info["app"])
    message = await messages.get_message(db, _message_id(request), app)
    return json_response(await _message_out(request, message, app.name))


@api.route(
    "GET",
    "/api/v1/push/messages/{message_id}",
    summary="A push message with its delivery statistics, by id alone",
    tag="push",
    roles=OPS,
    params=MESSAGE_PARAMS,
)
async def show_message_by_id(request: web.Request) -> web.Response:
    db = request.app[DB]
    message = await messages.get_message(db, _message_id(request))
    async with db.session() as s:
        app = await s.get(App, message.app_id)
    assert app is not None
    return json_response(await _message_out(request, message, app.name))


def _settings_dict(app: App, row: Any) -> dict[str, Any]:
    return {"app": app.name, "fallback": row.fallback, "ack_timeout": row.ack_timeout_seconds}


@api.route("GET", BASE + "/settings", summary="An app's push defaults", tag="push", roles=OPS)
async def show_settings(request: web.Request) -> web.Response:
    db = request.app[DB]
    app = await tenancy.get_app(db, request.match_info["app"])
    return json_response(_settings_dict(app, await messages.app_settings(db, app)))


@api.route(
    "PUT",
    BASE + "/settings",
    summary="Set an app's default fallback policy and ack timeout",
    tag="push",
    roles=OPS,
    body=SETTINGS_BODY,
)
async def update_settings(request: web.Request) -> web.Response:
    db = request.app[DB]
    app = await tenancy.get_app(db, request.match_info["app"])
    data = await read_object(request)
    fallback, ack = data.get("fallback"), data.get("ack_timeout")
    if fallback is not None and not isinstance(fallback, str):
        raise ValidationError("fallback must be a string")
    if ack is not None and (not isinstance(ack, int) or isinstance(ack, bool)):
        raise ValidationError("ack_timeout must be an integer")
    row = await messages.update_app_settings(db, actor_of(request), app, fallback, ack)
    return json_response(_settings_dict(app, row))
