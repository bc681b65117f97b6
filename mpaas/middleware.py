"""Request id, JSON errors, access logs and HTTP metrics, in one middleware.

Every error leaves as ``{"error": {"code", "message"}}``. Unexpected exceptions
become a 500 whose body carries only the request id; the traceback goes to the log.
Access logs record the path without its query string, because some clients
(CodePush) put their deployment key there.

The update check runs through here at tens of thousands of requests per second, so
the per-request work is kept small: request ids come from a per-process random prefix
and a counter, metric children are looked up once per (method, route, status), and
the access-log record is only built when INFO is enabled.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter, Histogram

from mpaas.errors import MpaasError
from mpaas.logs import request_id_var

log = logging.getLogger("mpaas.access")
errlog = logging.getLogger("mpaas.error")

REQUEST_ID = web.RequestKey("request_id", str)
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    429: "too_many_requests",
}


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "mpaas_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            "mpaas_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request and observe its latency (``.labels()`` only on a new label set)."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            if len(self._children) >= 4096:  # arbitrary methods could grow it without bound
                self._children.clear()
            children = self._children[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)


class RequestIds:
    """Request ids: 8 random hex digits per process, then a counter (16 hex digits in all).

    Unique within a process and, with overwhelming likelihood, across processes,
    without a system call for randomness on every request.
    """

    def __init__(self) -> None:
        self._reseed()
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._prefix = secrets.token_hex(4)
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFF:08x}"


_request_ids = RequestIds()


def _valid_request_id(rid: str) -> bool:
    return 0 < len(rid) <= 64 and rid.replace("-", "").isalnum()


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def _from_http_exception(exc: web.HTTPException) -> web.StreamResponse:
    if exc.status < 400:
        return exc
    code = HTTP_CODES.get(exc.status, "http_error")
    message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    if exc.status == 405 and isinstance(exc, web.HTTPMethodNotAllowed):
        message = f"method {exc.method} not allowed; allowed: {', '.join(sorted(exc.allowed_methods))}"
    elif exc.status == 404:
        message = "no such resource"
    elif exc.status == 413:
        message = "request body is too large"
    headers = {
        k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after", "www-authenticate")
    }
    return error_response(exc.status, code, message, headers)


def make_middleware(metrics: HttpMetrics, max_body: int) -> Middleware:
    ids = _request_ids

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = request.headers.get("X-Request-Id")
        if rid is None or not _valid_request_id(rid):
            rid = ids.next()
        request[REQUEST_ID] = rid
        token = request_id_var.set(rid)
        started = time.perf_counter()
        response: web.StreamResponse
        try:
            length = request.content_length
            if length is not None and length > max_body:
                response = error_response(413, "payload_too_large", f"request body exceeds {max_body} bytes")
            else:
                response = await handler(request)
        except MpaasError as exc:
            response = error_response(exc.status, exc.code, exc.message)
            if exc.status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="mpaas"'
        except web.HTTPException as exc:
            response = _from_http_exception(exc)
        except Exception:
            errlog.exception("unhandled error", extra={"method": request.method, "path": request.path})
            response = error_response(500, "internal_error", f"internal error; request id {rid}")
        finally:
            request_id_var.reset(token)
        elapsed = time.perf_counter() - started
        response.headers["X-Request-Id"] = rid
        info = request.match_info.route.resource
        route = info.canonical if info is not None else "unmatched"
        metrics.record(request.method, route, response.status, elapsed)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "request",
                extra={
                    "request_id": rid,
                    "method": request.method,
                    "path": request.path,
                    "route": route,
                    "status": response.status,
                    "ms": round(elapsed * 1000, 2),
                    "remote": request.remote,
                },
            )
        return response

    return middleware
