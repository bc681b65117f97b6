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
#: A JSON Schema (OpenAPI 3.1) for a parameter or a body.
Schema = Mapping[str, Any]
#: A query parameter: a shorthand ("int", "string", "bool") or a full schema.
QuerySpec = str | Schema
#: A body schema, or a function of the application for limits that are settings.
BodySpec = Schema | Callable[[web.Application], Schema]
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
    body: BodySpec | None = None
    query: Mapping[str, QuerySpec] = field(default_factory=dict)
    responses: Mapping[int, str] = field(default_factory=dict)
    raw_body: str | None = None
    #: Also answer HEAD with the GET handler (headers, no body); not a separate operation.
    head: bool = False
    #: Schemas of path parameters (what the handler accepts); others fall back to the
    #: schemas shared with :meth:`Api.share_params`, then to any string.
    params: Mapping[str, Schema] = field(default_factory=dict)
    #: Query parameters and headers the handler refuses to go without.
    required: tuple[str, ...] = ()
    #: Request headers the handler reads (other than auth), by name.
    headers: Mapping[str, Schema] = field(default_factory=dict)


class Api:
    """Collects endpoints; :meth:`register` adds them to an aiohttp router."""

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []
        #: Path parameter schemas that hold wherever the name appears (``{app}``).
        self.shared_params: dict[str, Schema] = {}

    def share_params(self, **schemas: Schema) -> None:
        """Declare what a path parameter accepts on every route of the server, for the
        OpenAPI document (identity declares ``app`` and ``channel``)."""
        self.shared_params.update(schemas)

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tag: str,
        auth: AuthKind = "admin",
        roles: Iterable[str] = (),
        body: BodySpec | None = None,
        query: Mapping[str, QuerySpec] | None = None,
        responses: Mapping[int, str] | None = None,
        raw_body: str | None = None,
        head: bool = False,
        params: Mapping[str, Schema] | None = None,
        required: Iterable[str] = (),
        headers: Mapping[str, Schema] | None = None,
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
                    dict(params or {}),
                    tuple(required),
                    dict(headers or {}),
                )
            )
            return handler

        return decorate

    def extend(self, other: Api) -> None:
        self.endpoints.extend(other.endpoints)
        self.shared_params.update(other.shared_params)

    def register(self, app: web.Application, edge: Edge, guard: Guard) -> None:
        """Add every endpoint, wrapped by ``edge``; admin endpoints first pass ``guard(roles)``.

        The guard (the role check) is handed in by the app factory, so this layer does
        not depend on identity.
        """
        for ep in self.endpoints:
            handler = ep.handler
            if ep.auth == "admin":
                handler = guard(ep.roles)(handler)
            if "{" in ep.path or ep.query:
                handler = _refusing_nul(handler)
            app.router.add_route(ep.method, ep.path, edge.wrap(handler, ep.method, ep.path))
            if ep.head:
                app.router.add_route("HEAD", ep.path, edge.wrap(handler, "HEAD", ep.path))


def _refusing_nul(handler: Handler) -> Handler:
    """400 for a URL that holds an encoded NUL (``%00``): no name, id or filter holds one,
    and PostgreSQL refuses it in text, which would otherwise surface as a 500."""

    async def refusing_nul(request: web.Request) -> web.StreamResponse:
        if "%00" in request.raw_path:
            raise ValidationError("the URL holds a NUL character (%00)")
        return await handler(request)

    refusing_nul.__name__ = handler.__name__
    refusing_nul.__doc__ = handler.__doc__
    return refusing_nul


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


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_number(text: str) -> int | float:
    """A JSON number with a fraction or exponent; ``2.0`` is the integer 2.

    JSON Schema (2020-12, which OpenAPI 3.1 uses) counts any number with a zero
    fractional part as an integer, and generated clients may send it so; handlers check
    integers with ``type(x) is int``, so the parser gives them one.
    """
    value = float(text)
    return int(value) if value.is_integer() else value


def parse_json(raw: bytes) -> Any:
    """``json.loads`` for untrusted bytes: malformed, nested past the interpreter's
    recursion limit (about 1,000 levels fit in 2 KB), an integer past Python's
    4,300-digit conversion limit, ``NaN``/``Infinity`` (not JSON), or a string holding
    U+0000 (which PostgreSQL refuses in text) is a 400, never a 500."""
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_json_number)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"request body is not valid UTF-8 JSON: {exc}", code="invalid_json") from None
    except ValueError as exc:  # JSONDecodeError, and the digit limit of int()
        raise BadRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply", code="invalid_json") from None
    if b"u0000" in raw and _holds_nul(value):  # only an escape can put a NUL in a JSON string
        raise ValidationError("a string in the body holds a NUL character (\\u0000)")
    return value


def _holds_nul(value: Any) -> bool:
    """Whether any string (or object key) in a parsed JSON value holds U+0000; iterative,
    so depth costs no recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


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


class OutcomeStreamResponse(web.StreamResponse):
    """A streamed answer (NDJSON progress lines) whose head says 200 before the outcome is known.

    Once prepared, a handler sets :attr:`outcome` to the status its final line reports;
    from then on :attr:`status` is that outcome, so the access log and the request
    metrics record what really happened rather than the 200 already on the wire.
    """

    outcome: int | None = None

    @property
    def status(self) -> int:
        if self.outcome is not None and self.prepared:
            return self.outcome
        return super().status


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
#: OpenAPI schemas of what :func:`path_id` and :func:`pagination` accept.
ID_SCHEMA: Schema = {"type": "integer", "minimum": 1, "maximum": MAX_INT64}
OFFSET_SCHEMA: Schema = {"type": "integer", "minimum": 0, "maximum": MAX_INT64}
LIMIT_SCHEMA: Schema = {"type": "integer", "minimum": 1, "maximum": 500}
PAGE_QUERY: Mapping[str, QuerySpec] = {"limit": LIMIT_SCHEMA, "offset": OFFSET_SCHEMA}


def pattern_schema(regex: re.Pattern[str] | str, **extra: Any) -> dict[str, Any]:
    """A string schema from the regex a handler checks with ``fullmatch``.

    JSON Schema patterns search, so the pattern is anchored with ``^`` and ``$``
    (ECMA-262's ``$`` matches only at the very end, unlike Python's before a final newline).
    """
    text = regex.pattern if isinstance(regex, re.Pattern) else regex
    text = text.removeprefix("^").removesuffix("$").removesuffix("\\Z")
    return {"type": "string", "pattern": f"^(?:{text})$", **extra}


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
