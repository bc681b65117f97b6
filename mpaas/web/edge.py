"""The edge of every route: request id, JSON errors, access log and HTTP metrics.

Every error leaves as ``{"error": {"code", "message"}}``. Unexpected exceptions
become a 500 whose body carries only the request id; the traceback goes to the log.
Access logs record the path without its query string, because some clients
(CodePush) put their deployment key there.

This is not an aiohttp middleware: :class:`Edge` wraps each handler when the route is
registered (:meth:`mpaas.web.api.Api.register`), and a last catch-all route answers 404
and 405. With no middleware, aiohttp calls the handler directly, which saves the
update check a fifth of the framework's per-request cost (ADR 0007). Per request the
edge does little: request ids come from a per-process random prefix and a counter,
metrics are plain counters read by a Prometheus collector at scrape time, and the
access-log record is only built when INFO is enabled.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
import time
from bisect import bisect_left
from collections.abc import Iterator

from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import istr
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from mpaas.errors import MpaasError
from mpaas.logs import request_id_var

log = logging.getLogger("mpaas.access")
errlog = logging.getLogger("mpaas.error")

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


LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class RouteStats:
    """Requests of one (method, route): counts per status and a latency histogram."""

    __slots__ = ("buckets", "by_status", "method", "route", "total_seconds")

    def __init__(self, method: str, route: str) -> None:
        self.method, self.route = method, route
        self.by_status: dict[int, int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total_seconds = 0.0

    def record(self, status: int, seconds: float) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + 1
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total_seconds += seconds


class HttpMetrics:
    """``mpaas_http_requests_total`` and ``mpaas_http_request_seconds``, collected at scrape time.

    Counting is plain integer arithmetic on the event loop's thread; the registry reads
    the numbers only when ``/metrics`` is scraped.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._routes: dict[tuple[str, str], RouteStats] = {}
        registry.register(self)

    def route(self, method: str, route: str) -> RouteStats:
        key = (method, route)
        found = self._routes.get(key)
        if found is None:
            found = self._routes[key] = RouteStats(method, route)
        return found

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count a request whose route is known only at run time (404, 405); bounded."""
        if (method, route) not in self._routes and len(self._routes) >= 4096:
            return  # arbitrary methods could grow the table without bound
        self.route(method, route).record(status, seconds)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "mpaas_http_requests", "HTTP requests", labels=["method", "route", "status"]
        )
        latency = HistogramMetricFamily(
            "mpaas_http_request_seconds", "HTTP request latency", labels=["method", "route"]
        )
        for stats in list(self._routes.values()):
            for status, n in sorted(stats.by_status.items()):
                requests.add_metric([stats.method, stats.route, str(status)], n)
            if not stats.by_status:
                continue
            cumulative, running = [], 0
            for bound, n in zip((*LATENCY_BUCKETS, float("inf")), stats.buckets, strict=True):
                running += n
                cumulative.append((floatToGoString(bound), running))
            latency.add_metric([stats.method, stats.route], cumulative, stats.total_seconds)
        yield requests
        yield latency


class RequestIds:
    """Request ids: 8 random hex digits per process, then a decimal counter.

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
        return self._prefix + str(next(self._counter))


_request_ids = RequestIds()
#: Header names as multidict's case-folded keys, made once (a str key is folded per use).
X_REQUEST_ID = istr("X-Request-Id")


def request_id(request: web.Request) -> str:
    """The client's ``X-Request-Id`` if it is a plausible id, else a new one."""
    rid = request.headers.get(X_REQUEST_ID)
    if rid is None or not _valid_request_id(rid):
        rid = _request_ids.next()
    return rid


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


class Edge:
    """Wraps route handlers with the request id, error mapping, metrics and access log."""

    def __init__(self, metrics: HttpMetrics, max_body: int) -> None:
        self.metrics = metrics
        self.max_body = max_body

    def wrap(self, handler: Handler, method: str, route: str) -> Handler:
        stats = self.metrics.route(method, route)
        max_body = self.max_body
        perf = time.perf_counter
        enabled = log.isEnabledFor
        var = request_id_var

        async def edge(request: web.Request) -> web.StreamResponse:
            rid = request_id(request)
            token = var.set(rid)
            started = perf()
            response: web.StreamResponse
            try:
                length = request.content_length
                if length is not None and length > max_body:
                    response = error_response(
                        413, "payload_too_large", f"request body exceeds {max_body} bytes"
                    )
                else:
                    response = await handler(request)
            except Exception as exc:
                response = _error(request, exc, rid)
            finally:
                var.reset(token)
            elapsed = perf() - started
            if not response.prepared:
                response.headers[X_REQUEST_ID] = rid
            stats.record(response.status, elapsed)
            if enabled(logging.INFO):
                _access(request, rid, route, response.status, elapsed)
            return response

        edge.__name__ = getattr(handler, "__name__", "edge")
        edge.__doc__ = handler.__doc__
        return edge

    def add_unmatched(self, app: web.Application) -> None:
        """The last route: 404 for unknown paths, 405 (with Allow) for known ones."""
        metrics = self.metrics

        async def unmatched(request: web.Request) -> web.StreamResponse:
            rid = request_id(request)
            started = time.perf_counter()
            allowed: set[str] = set()
            for resource in request.app.router.resources():
                if resource.name == UNMATCHED:
                    continue
                match, methods = await resource.resolve(request)
                if match is None:
                    allowed |= methods
            if allowed:
                response = error_response(
                    405,
                    "method_not_allowed",
                    f"method {request.method} not allowed; allowed: {', '.join(sorted(allowed))}",
                    {"Allow": ",".join(sorted(allowed))},
                )
            else:
                response = error_response(404, "not_found", "no such resource")
            response.headers[X_REQUEST_ID] = rid
            elapsed = time.perf_counter() - started
            metrics.record(request.method, "unmatched", response.status, elapsed)
            if log.isEnabledFor(logging.INFO):
                _access(request, rid, "unmatched", response.status, elapsed)
            return response

        app.router.add_route("*", "/{tail:.*}", unmatched, name=UNMATCHED)


UNMATCHED = "mpaas-unmatched"


def _error(request: web.Request, exc: Exception, rid: str) -> web.StreamResponse:
    if isinstance(exc, MpaasError):
        response = error_response(exc.status, exc.code, exc.message)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="mpaas"'
        return response
    if isinstance(exc, web.HTTPException):
        return _from_http_exception(exc)
    errlog.exception("unhandled error", extra={"method": request.method, "path": request.path})
    return error_response(500, "internal_error", f"internal error; request id {rid}")


def _access(request: web.Request, rid: str, route: str, status: int, elapsed: float) -> None:
    log.info(
        "request",
        extra={
            "request_id": rid,
            "method": request.method,
            "path": request.path,
            "route": route,
            "status": status,
            "ms": round(elapsed * 1000, 2),
            "remote": request.remote,
        },
    )
