"""The console's HTTP surface: the session API and the page shell and assets.

Pages then call the admin API (``/api/v1/...``) with the session cookie; the guard
(:mod:`mpaas.identity.guard`) accepts it through :func:`principal_from_cookie`, which
also demands the session's CSRF token on every unsafe method.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from mpaas.appkeys import SETTINGS
from mpaas.console import static
from mpaas.console.errors import CsrfFailed, SignInLocked
from mpaas.console.sessions import LOCALES, SignedIn, preferred_locale
from mpaas.console.wiring import CONSOLE
from mpaas.errors import BadRequest, MpaasError, Unauthorized, ValidationError
from mpaas.identity.tokens import Principal
from mpaas.logs import request_id_var
from mpaas.web.api import Api, json_response, read_object, required_str
from mpaas.web.edge import error_response

api = Api()
COOKIE = "mpaas_console"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_BODY = 4096
NO_STORE = {"Cache-Control": "no-store"}
TAG = "console"
SESSION_BODY = {
    "type": "object",
    "required": ["username", "password"],
    "properties": {
        "username": {"type": "string", "minLength": 1, "maxLength": 64},
        "password": {"type": "string", "minLength": 1, "maxLength": 256},
    },
}
LOCALE_BODY = {
    "type": "object",
    "required": ["locale"],
    "properties": {"locale": {"type": "string", "enum": list(LOCALES)}},
}


def is_secure(request: web.Request) -> bool:
    """TLS to this process, or to a trusted proxy that says so (MPAAS_TRUST_PROXY)."""
    if request.secure:
        return True
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.app[SETTINGS].trust_proxy and forwarded == "https"


async def signed_in(request: web.Request) -> SignedIn:
    secret = request.cookies.get(COOKIE)
    if not secret:
        raise Unauthorized("not signed in to the console", code="not_signed_in")
    return await request.app[CONSOLE].current(secret)


def check_csrf(request: web.Request, signed: SignedIn) -> None:
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent or not hmac.compare_digest(sent.encode(), signed.session.csrf_token.encode()):
        raise CsrfFailed(f"this console request needs the session's {CSRF_HEADER} header")


async def principal_from_cookie(request: web.Request) -> Principal | None:
    """The guard's hook: the console account behind the cookie (None without a cookie)."""
    if COOKIE not in request.cookies:
        return None
    signed = await signed_in(request)
    if request.method not in SAFE_METHODS:
        check_csrf(request, signed)
    account = signed.account
    return Principal(account.id or 0, account.username, account.role, kind="console")


def _session_response(signed: SignedIn) -> web.Response:
    return json_response(signed.body(), headers=NO_STORE)


@api.route(
    "POST",
    "/console/api/session",
    summary="Sign in to the web console (sets the session cookie)",
    tag=TAG,
    auth="public",
    body=SESSION_BODY,
    responses={200: "signed in", 401: "wrong user name or password", 429: "locked; see Retry-After"},
)
async def sign_in(request: web.Request) -> web.StreamResponse:
    if request.content_type != "application/json":
        raise BadRequest(
            "sign in with a JSON body (Content-Type: application/json)",
            code="unsupported_media_type",
            status=415,
        )
    data = await read_object(request, MAX_BODY)
    username = required_str(data, "username", max_len=64)
    password = required_str(data, "password", max_len=256)
    console = request.app[CONSOLE]
    try:
        signed, secret = await console.sign_in(
            username,
            password,
            preferred_locale(request.headers.get("Accept-Language", "")),
            request_id_var.get(),
        )
    except SignInLocked as exc:
        return error_response(exc.status, exc.code, exc.message, {"Retry-After": str(exc.retry_after)})
    response = _session_response(signed)
    response.set_cookie(
        COOKIE,
        secret,
        max_age=int(console.max_age.total_seconds()),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=is_secure(request),
    )
    return response


@api.route(
    "GET",
    "/console/api/session",
    summary="The signed-in console user, role, CSRF token and locale",
    tag=TAG,
    auth="public",
    responses={200: "signed in", 401: "not signed in, or the session expired"},
)
async def get_session(request: web.Request) -> web.StreamResponse:
    return _session_response(await signed_in(request))


@api.route(
    "PATCH",
    "/console/api/session",
    summary="Change the console session's locale (needs X-CSRF-Token)",
    tag=TAG,
    auth="public",
    body=LOCALE_BODY,
    responses={200: "changed", 401: "not signed in", 403: "CSRF token missing or wrong"},
)
async def patch_session(request: web.Request) -> web.StreamResponse:
    signed = await signed_in(request)
    check_csrf(request, signed)
    locale = required_str(await read_object(request, MAX_BODY), "locale", max_len=8)
    if locale not in LOCALES:
        raise ValidationError(f"locale must be one of {', '.join(LOCALES)}")
    return _session_response(await request.app[CONSOLE].set_locale(signed, locale))


@api.route(
    "DELETE",
    "/console/api/session",
    summary="Sign out of the web console (needs X-CSRF-Token)",
    tag=TAG,
    auth="public",
    responses={204: "signed out, cookie cleared", 403: "CSRF token missing or wrong"},
)
async def sign_out(request: web.Request) -> web.StreamResponse:
    try:
        signed: SignedIn | None = await signed_in(request)
    except MpaasError:
        signed = None  # nothing to end; clear whatever cookie is there
    if signed is not None:
        check_csrf(request, signed)
        await request.app[CONSOLE].sign_out(signed, request_id_var.get())
    response = web.Response(status=204, headers=NO_STORE)
    response.del_cookie(COOKIE, path="/", secure=is_secure(request), httponly=True, samesite="Strict")
    return response


@api.route(
    "GET",
    "/console",
    summary="Redirect to the console",
    tag=TAG,
    auth="public",
    responses={308: "to /console/"},
)
async def console_root(request: web.Request) -> web.StreamResponse:
    return web.Response(status=308, headers={"Location": "/console/"})


@api.route("GET", "/console/", summary="The web console (its HTML shell)", tag=TAG, auth="public", head=True)
async def console_shell(request: web.Request) -> web.StreamResponse:
    return static.shell(request)


@api.route(
    "GET",
    "/console/assets/{name}",
    summary="A built file of the web console (scripts, styles, images)",
    tag=TAG,
    auth="public",
    head=True,
    params={"name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"}},
    responses={200: "the file", 304: "not modified", 404: "no such file"},
)
async def console_asset(request: web.Request) -> web.StreamResponse:
    return static.asset(request, request.match_info["name"])


@api.route(
    "GET",
    "/console/{page:.+}",
    summary="A page of the web console (the same HTML shell; the page routes in the browser)",
    tag=TAG,
    auth="public",
    head=True,
    responses={200: "the shell", 404: "not a page"},
)
async def console_page(request: web.Request) -> web.StreamResponse:
    if not static.is_page(request.match_info["page"]):
        raise web.HTTPNotFound()
    return static.shell(request)
