"""Operator endpoints: health, Prometheus metrics, the OpenAPI document, and blob gc."""

from __future__ import annotations

import asyncio
import hmac
from datetime import timedelta
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mpaas.appkeys import BLOBS, DB, GC_SOURCES, METRICS, SETTINGS
from mpaas.errors import Unauthorized, ValidationError
from mpaas.identity.guard import actor_of
from mpaas.ops.gc import DEFAULT_GRACE, GC_SWEEPERS, Sweeper, collect_garbage
from mpaas.web.api import Api, json_response, read_object
from mpaas.web.openapi import build_openapi

api = Api()

#: Ten years: longer would overflow a timedelta subtracted from now, and no blob is kept that long.
MAX_GRACE_SECONDS = 10 * 366 * 24 * 3600


@api.route(
    "GET",
    "/healthz",
    summary="Liveness and readiness: checks the database and the blob store",
    tag="operations",
    auth="public",
    responses={200: "healthy", 503: "a dependency is down"},
)
async def healthz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    ok = True
    for name, probe in (("database", request.app[DB].ping()), ("blobs", request.app[BLOBS].check())):
        try:
            await asyncio.wait_for(probe, timeout=5)
            checks[name] = "ok"
        except Exception as exc:
            ok = False
            checks[name] = f"error: {type(exc).__name__}"
    return json_response(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )


@api.route(
    "GET",
    "/metrics",
    summary="Prometheus metrics (text format); public unless MPAAS_METRICS_TOKEN is set",
    tag="operations",
    auth="metrics",
    responses={200: "metrics", 401: "MPAAS_METRICS_TOKEN is set and the bearer token is not it"},
)
async def metrics(request: web.Request) -> web.Response:
    expected = request.app[SETTINGS].metrics_token
    if expected:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthorized("metrics need the configured bearer token", code="invalid_token")
    body = generate_latest(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@api.route(
    "GET", "/api/openapi.json", summary="This API's OpenAPI 3.1 document", tag="operations", auth="public"
)
async def openapi_doc(request: web.Request) -> web.Response:
    return json_response(build_openapi(request.app))


@api.route(
    "POST",
    "/api/v1/gc",
    summary="Delete blobs that nothing references, and stale uploads (older than grace_seconds)",
    tag="operations",
    roles=("admin",),
    body={
        "type": "object",
        "properties": {
            "dry_run": {"type": "boolean"},
            "grace_seconds": {"type": "integer", "minimum": 0, "maximum": MAX_GRACE_SECONDS},
        },
    },
)
async def gc_handler(request: web.Request) -> web.Response:
    data = await read_object(request) if request.can_read_body else {}
    dry_run = data.get("dry_run", False)
    grace = data.get("grace_seconds", int(DEFAULT_GRACE.total_seconds()))
    if not isinstance(dry_run, bool) or type(grace) is not int or not 0 <= grace <= MAX_GRACE_SECONDS:
        raise ValidationError(
            f"dry_run must be a boolean and grace_seconds an integer from 0 to {MAX_GRACE_SECONDS}"
        )
    sources: list[Any] = request.app[GC_SOURCES]
    sweepers: list[Sweeper] = request.app[GC_SWEEPERS]
    report = await collect_garbage(
        request.app[DB],
        request.app[BLOBS],
        sources,
        actor_of(request),
        grace=timedelta(seconds=grace),
        dry_run=dry_run,
        sweepers=sweepers,
    )
    return json_response(report.to_dict())
