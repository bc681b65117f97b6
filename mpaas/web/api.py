"""Route registration that documents itself, plus small helpers for thin handlers.

Every route goes through :class:`Api`. It records what the OpenAPI document needs
(summary, auth, roles, body schema), and it wraps admin handlers with the role check,
so an admin endpoint cannot be registered without one. ``/api/openapi.json`` is built
from the same list, and a test compares it with the router.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from multidict import istr

from mpaas.errors import BadRequest, PayloadTooLarge, ValidationError
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
    #: Also answer HEAD with the GET handler (headers, no body); not a separate operation.
    head: bool = False


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
        head: bool = False,
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
                    head,
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
            if ep.head:
                app.router.add_route("HEAD", ep.path, edge.wrap(handler, "HEAD", ep.path))


#: The deployment key's header on every client route (docs/protocol.md); the older
#: ``X-Mpaas-Deployment-Key`` is accepted everywhere for compatibility.
DEPLOYMENT_KEY_HEADER = istr("X-Deployment-Key")
LEGACY_DEPLOYMENT_KEY_HEADER = istr("X-Mpaas-Deployment-Key")


def deployment_key_header(request: web.Request) -> str | None:
    """The deployment key from ``X-Deployment-Key`` or, failing that, ``X-Mpaas-Deployment-Key``."""
    headers = request.headers
    return headers.get(DEPLOYMENT_KEY_HEADER) or headers.get(LEGACY_DEPLOYMENT_KEY_HEADER)


def refuse_oversized(request: web.Request, limit: int) -> None:
    """413 ``payload_too_large`` when the declared Content-Length exceeds ``limit``.

    Constant time and allocation-free: for routes that read their body with
    ``request.read()`` on a hot path, or that take no body at all.
    """
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"request body is larger than this endpoint's limit of {limit} bytes")


async def read_bounded(request: web.Request, limit: int) -> bytes:
    """The body, at most ``limit`` bytes: refused by Content-Length before anything is
    read, and a chunked body is cut (413) as soon as it passes the limit."""
    refuse_oversized(request, limit)
    if request.content_length is not None:
        return await request.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than this endpoint's limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: web.Request, limit: int | None = None) -> Any:
    """Parse a JSON body, answering 400 ``invalid_json`` rather than a traceback
    (413 past ``limit`` bytes, when given)."""
    raw = await request.read() if limit is None else await read_bounded(request, limit)
    if not raw:
        raise BadRequest("request body is empty; a JSON object was expected", code="invalid_json")
    return parse_json(raw)


def parse_json(raw: bytes) -> Any:
    """``json.loads`` for untrusted bytes: malformed, or nested past the interpreter's
    recursion limit (about 1,000 levels fit in 2 KB), is a 400, never a 500."""
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply", code="invalid_json") from None


async def read_object(request: web.Request, limit: int | None = None) -> dict[str, Any]:
    data = await read_json(request, limit)
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


def required_str(data: Mapping[str, Any], name: str, *, max_len: int = 256) -> str:
    """A required, non-empty string field (an ``assert`` is no input check: ``python -O`` drops it)."""
    value = field_str(data, name, max_len=max_len)
    if not value:
        raise ValidationError(f"field {name!r} must not be empty")
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


#: The largest value a signed 64-bit database column holds: ids and offsets beyond it
#: would overflow in the driver, so they are refused as input instead.
MAX_INT64 = 2**63 - 1
_DECIMAL = re.compile(r"-?[0-9]{1,19}")


def parse_int(raw: str, name: str, *, minimum: int = 0, maximum: int = MAX_INT64) -> int:
    """A decimal integer from a path or query string, within ``minimum..maximum``."""
    if not _DECIMAL.fullmatch(raw) or not minimum <= int(raw) <= maximum:
        raise ValidationError(f"{name} must be an integer from {minimum} to {maximum}")
    return int(raw)


def path_id(request: web.Request, name: str) -> int:
    """A positive row id from the URL path (1..2^63-1)."""
    return parse_int(request.match_info[name], name, minimum=1)


def pagination(request: web.Request, *, default: int = 50, maximum: int = 500) -> tuple[int, int]:
    """(limit, offset) from the query string, validated."""
    limit = parse_int(request.query.get("limit", str(default)), "limit", minimum=1, maximum=maximum)
    offset = parse_int(request.query.get("offset", "0"), "offset")
    return limit, offset


def page(items: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
    next_offset = offset + limit if offset + limit < total else None
    return {"items": items, "total": total, "limit": limit, "offset": offset, "next_offset": next_offset}
