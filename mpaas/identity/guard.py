"""The role check that wraps every admin endpoint, and who is calling.

:func:`require_roles` is handed to :meth:`mpaas.web.api.Api.register` by the app
factory, so the web layer checks roles without importing identity.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from aiohttp import web

from mpaas.appkeys import DB
from mpaas.errors import Forbidden
from mpaas.identity.audit import Actor
from mpaas.identity.roles import check_roles
from mpaas.identity.tokens import Principal, authenticate
from mpaas.logs import request_id_var
from mpaas.web.api import Handler

PRINCIPAL = web.RequestKey("principal", Principal)


def require_roles(roles: tuple[str, ...]) -> Callable[[Handler], Handler]:
    """Wrap a handler: 401 without a valid token, 403 when its role is not allowed."""
    check_roles(roles, "an endpoint")

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            principal = await authenticate(request.app[DB], request.headers.get("Authorization"))
            if principal.role != "admin" and principal.role not in roles:
                allowed = ", ".join(dict.fromkeys(("admin", *roles)))
                raise Forbidden(f"role {principal.role!r} may not do this; allowed roles: {allowed}")
            request[PRINCIPAL] = principal
            return await handler(request)

        return guarded

    return decorate


def principal_of(request: web.Request) -> Principal:
    principal: Principal = request[PRINCIPAL]
    return principal


def actor_of(request: web.Request) -> Actor:
    return Actor(principal_of(request).actor, request_id_var.get())
