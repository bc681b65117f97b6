"""Route registration that documents itself, plus small helpers for thin handlers.

Every route goes through :class:`Api`. It records what the OpenAPI document needs
(summary, auth, roles, body schema), and it wraps admin handlers with the role check,
so an admin endpoint cannot be registered without one. ``/api/openapi.json`` is built
from the same list, and a test compares it with the router.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web

from mpaas.errors import BadRequest, ValidationError
from mpaas.web.edge import Edge

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AuthKind = Literal["admin", "client", "public", "metrics"]
#: Given the roles an endpoint allows, wraps its handler with the role check.
Guard = Callable[[tuple[str, ...]], Callable[[Handler], Handler]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    auth: AuthKind
    roles: tuple[str, ...] = ()
    body: Mapping[str, Any] | None = None
    query: Mapping[str, str] = field(default_factory=dict)
    responses: Mapping[int, str] = field(default_factory=dict)
    raw_body: str | None = None


class Api:
    """Collects endpoints; :meth:`register` adds them to an aiohttp router."""

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tag: str,
        auth: AuthKind = "admin",
        roles: Iterable[str] = (),
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
        responses: Mapping[int, str] | None = None,
        raw_body: str | None = None,
    ) -> Callable[[Handler], Handler]:
        role_set = tuple(roles)
        if auth == "admin" and not role_set:
            role_set = ("admin",)

        def decorate(handler: Handler) -> Handler:
            self.endpoints.append(
                Endpoint(
                    method.upper(),
                    path,
                    handler,
                    summary,
                    tag,
                    auth,
                    role_set,
                    body,
                    dict(query or {}),
                    dict(responses or {}),
                    raw_body,
                )
            )
            return handler

        return decorate

    def extend(self, other: Api) -> None:
        self.endpoints.extend(other.endpoints)

    def register(self, app: web.Application, edge: Edge, guard: Guard) -> None:
        """Add every endpoint, wrapped by ``edge``; admin endpoints first pass ``guard(roles)``.

        The guard (the role check) is handed in by the app factory, so this layer does
        not depend on identity.
        """
        for ep in self.endpoints:
            handler = ep.handler
            if ep.auth == "admin":
                handler = guard(ep.roles)(handler)
            app.router.add_route(ep.method, ep.path, edge.wrap(handler, ep.method, ep.path))


async def read_json(request: web.Request) -> Any:
    """Parse a JSON body, answering 400 ``invalid_json`` rather than a traceback."""
    raw = await request.read()
    if not raw:
        raise BadRequest("request body is empty; a JSON object was expected", code="invalid_json")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from None


async def read_object(request: web.Request) -> dict[str, Any]:
    data = await read_json(request)
    if not isinstance(data, dict):
        raise ValidationError("request body must be a JSON object")
    return data


def field_str(data: Mapping[str, Any], name: str, *, required: bool = True, max_len: int = 256) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise ValidationError(f"field {name!r} is required")
        return None
    if not isinstance(value, str):
        raise ValidationError(f"field {name!r} must be a string")
    if len(value) > max_len:
        raise ValidationError(f"field {name!r} is longer than {max_len} characters")
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    return str(value)


def dumps(data: Any) -> bytes:
    """JSON for the wire: compact, with UTC timestamps as ISO 8601 ``...Z``."""
    return json.dumps(data, default=_json_default, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=dumps(data),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def pagination(request: web.Request, *, default: int = 50, maximum: int = 500) -> tuple[int, int]:
    """(limit, offset) from the query string, validated."""
    try:
        limit = int(request.query.get("limit", default))
        offset = int(request.query.get("offset", 0))
    except ValueError:
        raise ValidationError("limit and offset must be integers") from None
    if not 1 <= limit <= maximum or offset < 0:
        raise ValidationError(f"limit must be 1..{maximum} and offset >= 0")
    return limit, offset


def page(items: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
    next_offset = offset + limit if offset + limit < total else None
    return {"items": items, "total": total, "limit": limit, "offset": offset, "next_offset": next_offset}
