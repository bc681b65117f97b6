"""The role check that wraps every admin endpoint, and who is calling.

The caller is a bearer token or, through :data:`COOKIE_AUTH`, a web console session.

:func:`require_roles` is handed to :meth:`mpaas.web.api.Api.register` by the app
factory, so the web layer checks roles without importing identity.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from aiohttp import web

from mpaas.appkeys import DB
from mpaas.errors import Forbidden
from mpaas.identity.audit import Actor
from mpaas.identity.roles import check_roles
from mpaas.identity.tokens import Principal, authenticate
from mpaas.logs import request_id_var
from mpaas.web.api import Handler

PRINCIPAL = web.RequestKey("principal", Principal)
#: Authenticates a request that carries no Authorization header by other means (the web
#: console's session cookie and CSRF token, installed by :mod:`mpaas.console`): a
#: principal, None when the request carries no such credential, or an error to answer.
CookieAuthenticator = Callable[[web.Request], Awaitable[Principal | None]]
COOKIE_AUTH: web.AppKey[CookieAuthenticator] = web.AppKey("cookie_auth")


async def _principal(request: web.Request) -> Principal:
    """A bearer token wins; without an Authorization header, the console's cookie may do."""
    header = request.headers.get("Authorization")
    if header is None:
        cookie_auth = request.app.get(COOKIE_AUTH)
        if cookie_auth is not None:
            principal = await cookie_auth(request)
            if principal is not None:
                return principal
    return await authenticate(request.app[DB], header)


#: Routes without an ``{app}`` that a token scoped to some apps may still call.
SCOPE_FREE = {("GET", "/api/v1/whoami"), ("GET", "/api/v1/apps")}


def check_app_scope(request: web.Request, principal: Principal) -> None:
    """403 when a token scoped to some apps calls a route about another app (or about none)."""
    if principal.apps is None:
        return
    app = request.match_info.get("app")
    allowed = ", ".join(principal.apps)
    if app is None:
        resource = request.match_info.route.resource
        if (request.method, resource.canonical if resource else "") in SCOPE_FREE:
            return
        raise Forbidden(
            f"this token is limited to the apps {allowed}; this endpoint is not about one app",
            code="app_scope",
        )
    if app not in principal.apps:
        raise Forbidden(f"this token is limited to the apps {allowed}; not {app!r}", code="app_scope")


def require_roles(roles: tuple[str, ...]) -> Callable[[Handler], Handler]:
    """Wrap a handler: 401 without a valid token, 403 when its role is not allowed."""
    check_roles(roles, "an endpoint")

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            principal = await _principal(request)
            if principal.role != "admin" and principal.role not in roles:
                allowed = ", ".join(dict.fromkeys(("admin", *roles)))
                raise Forbidden(f"role {principal.role!r} may not do this; allowed roles: {allowed}")
            check_app_scope(request, principal)
            request[PRINCIPAL] = principal
            return await handler(request)

        return guarded

    return decorate


def principal_of(request: web.Request) -> Principal:
    principal: Principal = request[PRINCIPAL]
    return principal


def actor_of(request: web.Request) -> Actor:
    return Actor(principal_of(request).actor, request_id_var.get())
