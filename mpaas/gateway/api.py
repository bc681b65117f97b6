"""HTTP surface of the gateway: ``POST /gateway`` (signed calls) and its admin endpoints.

Admin: app keys (the HMAC secret is shown once, at creation), and revoking a device key,
which blocks that device id for good.
"""

from __future__ import annotations

from aiohttp import web

from mpaas.errors import ValidationError
from mpaas.gateway.signing import (
    APP_RE,
    DEVICE_RE,
    ECDSA_P256,
    H_APP,
    H_DEVICE,
    H_NONCE,
    H_OPERATION,
    H_SESSION,
    H_SIGNATURE,
    H_TIMESTAMP,
    H_VERSION,
    HMAC_SHA256,
    KID_RE,
    NONCE_RE,
    OPERATION_RE,
    SESSION_RE,
    TIMESTAMP_RE,
    VERSION_RE,
)
from mpaas.gateway.wiring import GATEWAY
from mpaas.identity.guard import actor_of
from mpaas.web.api import Api, Schema, json_response

api = Api()
KEYS = "/api/v1/apps/{app}/gateway/keys"


def _full(pattern: str, description: str) -> Schema:
    """A header or parameter schema from the pattern the server matches in full."""
    return {"type": "string", "pattern": f"^(?:{pattern})$", "description": description}


#: Standard base64 with padding in canonical form (the unused bits of the last group are
#: zero), 4 to 256 characters: what ``X-Mgs-Signature``'s ``sig`` must be.
_TAIL = "[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]="
_CANONICAL_B64 = f"(?:[A-Za-z0-9+/]{{4}}){{1,64}}|(?:[A-Za-z0-9+/]{{4}}){{0,63}}(?:{_TAIL})"
#: The X-Mgs-* headers as the server checks them (mpaas.gateway.signing; docs/gateway.md).
GATEWAY_HEADERS: dict[str, Schema] = {
    H_OPERATION: _full(OPERATION_RE.pattern, "2 to 8 dot-separated words: com.bank.transfer.create"),
    H_VERSION: _full(VERSION_RE.pattern, "the operation's version, 1 to 9999"),
    H_APP: _full(APP_RE.pattern, "the mpaas app name"),
    H_DEVICE: _full(DEVICE_RE.pattern, "random at first launch, kept with the device key"),
    H_SESSION: _full(SESSION_RE.pattern, "the token a session operation returned; absent before"),
    H_TIMESTAMP: _full(TIMESTAMP_RE.pattern, "Unix time in milliseconds"),
    H_NONCE: _full(NONCE_RE.pattern, "fresh for every request"),
    H_SIGNATURE: _full(
        f"alg=(?:{HMAC_SHA256}|{ECDSA_P256});kid={KID_RE.pattern};sig=(?:{_CANONICAL_B64})",
        "alg=ALG;kid=KID;sig=BASE64, in this order, no spaces",
    ),
}
KID_SCHEMA = _full(KID_RE.pattern, "an app key id")
DEVICE_SCHEMA = _full(DEVICE_RE.pattern, "a gateway device id")


@api.route(
    "POST",
    "/gateway",
    summary="A signed gateway call (headers X-Mgs-*, JSON body); answers carry an MGS result code",
    tag="gateway",
    auth="client",
    raw_body="application/json",
    headers=GATEWAY_HEADERS,
    required=(H_OPERATION, H_VERSION, H_APP, H_DEVICE, H_TIMESTAMP, H_NONCE, H_SIGNATURE),
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


@api.route(
    "DELETE",
    KEYS + "/{kid}",
    summary="Revoke an app's gateway key",
    tag="gateway",
    roles=("admin",),
    params={"kid": KID_SCHEMA},
    responses={200: "revoked", 404: "no such key"},
)
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
    params={"device": DEVICE_SCHEMA},
    responses={204: "revoked", 404: "no key is registered for this device"},
)
async def revoke_device_handler(request: web.Request) -> web.Response:
    device = request.match_info["device"]
    if DEVICE_RE.fullmatch(device) is None:
        raise ValidationError("malformed device id")
    await request.app[GATEWAY].keys.revoke_device(actor_of(request), request.match_info["app"], device)
    return web.Response(status=204)
