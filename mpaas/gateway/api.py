"""HTTP surface of the gateway: ``POST /gateway`` (signed calls) and its admin endpoints.

Admin: app keys (the HMAC secret is shown once, at creation), and revoking a device key,
which blocks that device id for good.
"""

from __future__ import annotations

from aiohttp import web

from mpaas.errors import ValidationError
from mpaas.gateway.signing import DEVICE_RE, KID_RE
from mpaas.gateway.wiring import GATEWAY
from mpaas.identity.guard import actor_of
from mpaas.web.api import Api, json_response

api = Api()
KEYS = "/api/v1/apps/{app}/gateway/keys"


@api.route(
    "POST",
    "/gateway",
    summary="A signed gateway call (headers X-Mgs-*, JSON body); answers carry an MGS result code",
    tag="gateway",
    auth="client",
    raw_body="application/json",
    responses={
        200: "1000 success",
        400: "4001 invalid parameters",
        401: "2000 login required, 4002 signature invalid, 4003 expired or replayed",
        403: "1001 access denied, 3001 not allowed for this tier",
        404: "3000 unknown operation",
        428: "5000 risk challenge required",
        429: "1002 rate limited",
        500: "6666 server error",
        503: "7000 upstream unavailable",
    },
)
async def gateway_handler(request: web.Request) -> web.StreamResponse:
    return await request.app[GATEWAY].handle(request)


def key_dict(row: object) -> dict[str, object]:
    return {k: getattr(row, k) for k in ("kid", "created_by", "created_at", "revoked_at")}


@api.route(
    "POST",
    KEYS,
    summary="Create an app key for HMAC-signed gateway calls; the secret is shown once",
    tag="gateway",
    roles=("admin",),
    responses={201: "created"},
)
async def create_key_handler(request: web.Request) -> web.Response:
    app = request.match_info["app"]
    row, secret = await request.app[GATEWAY].keys.create_app_key(actor_of(request), app)
    return json_response(key_dict(row) | {"app": app, "secret": secret}, status=201)


@api.route("GET", KEYS, summary="List an app's gateway keys (never secrets)", tag="gateway", roles=("admin",))
async def list_keys_handler(request: web.Request) -> web.Response:
    rows = await request.app[GATEWAY].keys.list_app_keys(request.match_info["app"])
    return json_response({"items": [key_dict(r) for r in rows]})


@api.route("DELETE", KEYS + "/{kid}", summary="Revoke an app's gateway key", tag="gateway", roles=("admin",))
async def revoke_key_handler(request: web.Request) -> web.Response:
    kid = request.match_info["kid"]
    if KID_RE.fullmatch(kid) is None:
        raise ValidationError("malformed key id")
    row = await request.app[GATEWAY].keys.revoke_app_key(actor_of(request), request.match_info["app"], kid)
    return json_response(key_dict(row))


@api.route(
    "DELETE",
    "/api/v1/apps/{app}/gateway/devices/{device}/key",
    summary="Revoke a device's key: that device id is refused from now on",
    tag="gateway",
    roles=("admin",),
    responses={204: "revoked"},
)
async def revoke_device_handler(request: web.Request) -> web.Response:
    device = request.match_info["device"]
    if DEVICE_RE.fullmatch(device) is None:
        raise ValidationError("malformed device id")
    await request.app[GATEWAY].keys.revoke_device(actor_of(request), request.match_info["app"], device)
    return web.Response(status=204)
