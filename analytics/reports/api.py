"""The reports API: ``/api/v1/analytics/reports/{kind}`` and saved reports, for the analyst role.

Every report kind is its own route (GET with a query string, or POST with a JSON body),
so the OpenAPI document carries each one's parameters. Parameters are checked before
the store is touched (400 ``invalid_report_parameter``); the query runs in a worker
thread on the engine over the event store this process has open (503
``analytics_engine_unavailable`` when it has none: with DuckDB, only the process that
holds the store's writer lock can read it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from mpaas.analytics.reports import saved
from mpaas.analytics.reports.engine import engine_for
from mpaas.analytics.reports.errors import EngineUnavailable
from mpaas.analytics.reports.inputs import EVENT_RE, FILTER_TEXT_PATTERN, ID_RE, bad, query_dict
from mpaas.analytics.reports.kinds import KINDS, Kind, Prepared, kind_of, prepare, validate_saved
from mpaas.analytics.reports.outputs import to_json
from mpaas.analytics.runtime import ANALYTICS, open_store
from mpaas.appkeys import DB
from mpaas.identity.guard import actor_of
from mpaas.settings import Settings
from mpaas.web.api import (
    PAGE_QUERY,
    Api,
    Schema,
    field_str,
    json_response,
    page,
    pagination,
    pattern_schema,
    read_object,
    required_str,
)

api = Api()
FILTER_TEXT = {"type": "string", "pattern": FILTER_TEXT_PATTERN, "description": "field=value, !=, >, <, ~"}
ANALYST = ("analyst",)
#: Report kinds that release engineers read too: aggregate shares of devices per package
#: version, about their own releases, nothing about a person (the console's releases page).
RELEASE_KINDS = {"adoption": ("analyst", "release-manager")}
REPORTS = "/api/v1/analytics/reports"
SAVED = "/api/v1/analytics/saved-reports"
MAX_BODY = 64 * 1024
#: How long a request waits for this process's loader to open the store at start-up.
STORE_WAIT_SECONDS = 2.0
#: The reports' notion of now (``last_days`` ranges); tests put a fixed clock here.
CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("reports_clock")
Handler = Callable[[web.Request], Awaitable[web.Response]]


def _now(request: web.Request) -> datetime:
    clock = request.app.get(CLOCK)
    return clock() if clock is not None else datetime.now(UTC)


async def _run(request: web.Request, call: Prepared, **extra: Any) -> web.Response:
    rt = request.app[ANALYTICS]
    if rt.store is None and rt.settings.analytics_loader and not rt.settings.analytics_url:
        try:
            await asyncio.wait_for(rt.loader_ready.wait(), STORE_WAIT_SECONDS)
        except TimeoutError:
            pass
    if rt.store is not None:
        result = await asyncio.to_thread(call.run, engine_for(rt.store))
    elif rt.settings.analytics_url:  # ClickHouse serves any process: a connection for this report
        result = await asyncio.to_thread(_run_on_own_store, rt.settings, call)
    else:
        raise EngineUnavailable(
            "this server process does not have the event store open (with DuckDB, only the "
            "process that runs the loader can read it); ask again, or run the loader here"
        )
    out = {"rows": to_json(result)} if isinstance(result, tuple) else to_json(result)
    return json_response({"query": call.describe() | extra, "result": out})


def _run_on_own_store(settings: Settings, call: Prepared) -> Any:
    try:
        store = open_store(settings)
    except Exception as exc:  # the server is down or refuses us: not the analyst's fault
        raise EngineUnavailable(f"the event store cannot be opened: {str(exc)[:200]}") from None
    try:
        return call.run(engine_for(store))
    finally:
        store.close()


async def _raw(request: web.Request, *, empty_ok: bool = False) -> dict[str, Any]:
    if request.method == "GET":
        return query_dict(list(request.query.items()))
    if empty_ok and not request.body_exists:
        return {}
    return await read_object(request, MAX_BODY)


def _names_text(low: int, high: int) -> Schema:
    """Event names separated by commas, ``low`` to ``high`` of them (at least one)."""
    more = f"{{{max(low - 1, 0)},{high - 1}}}"
    return pattern_schema(f"{EVENT_RE.pattern}(?:,{EVENT_RE.pattern}){more}", description="comma-separated")


def _query_spec(kind: Kind) -> dict[str, Schema]:
    """The body's schemas as query parameters: ``filter`` (repeatable) is ``field=value``
    text there, and a list parameter is comma-separated text."""
    out: dict[str, Schema] = {}
    for name, schema in kind.schema()["properties"].items():
        if name == "filter":
            out[name] = {"type": "array", "maxItems": schema["maxItems"], "items": FILTER_TEXT}
        elif schema.get("type") == "array":
            out[name] = _names_text(schema.get("minItems", 1), schema["maxItems"])
        else:
            out[name] = schema
    return out


def _report_handler(kind: Kind) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return await _run(request, prepare(kind, await _raw(request), _now(request)))

    handler.__name__ = "report_" + kind.name.replace("-", "_")
    return handler


for _kind in KINDS.values():
    _handler = _report_handler(_kind)
    _path = f"{REPORTS}/{_kind.name}"
    api.route(
        "GET",
        _path,
        summary=_kind.summary,
        tag="analytics-reports",
        roles=RELEASE_KINDS.get(_kind.name, ANALYST),
        query=_query_spec(_kind),
        required=_kind.schema()["required"],
    )(_handler)
    api.route(
        "POST",
        _path,
        summary=_kind.summary,
        tag="analytics-reports",
        roles=RELEASE_KINDS.get(_kind.name, ANALYST),
        body=_kind.schema(),
    )(_handler)


# ---- saved reports --------------------------------------------------------------------------


def _saved_params(kind: Kind) -> Schema:
    """The kind's parameters as a saved report keeps them: the same, but for ``app``."""
    schema = kind.schema()
    return schema | {
        "required": [name for name in schema["required"] if name != "app"],
        "properties": {k: v for k, v in schema["properties"].items() if k != "app"},
    }


SAVE_BODY = {
    "type": "object",
    "required": ["app", "name", "kind"],
    "additionalProperties": False,
    "properties": {
        "app": {"type": "string", "pattern": f"^{ID_RE.pattern}$"},
        "name": {"type": "string", "pattern": f"^{saved.NAME_RE.pattern}$"},
        "kind": {"enum": list(KINDS)},
        "description": {"type": "string", "maxLength": 1000},
        "params": {"type": "object", "description": "the kind's parameters, without app"},
    },
    "allOf": [
        {
            "if": {"properties": {"kind": {"const": name}}},
            "then": {
                "properties": {"params": _saved_params(kind)},
                "required": ["params"] if kind.required else [],
            },
        }
        for name, kind in KINDS.items()
    ],
}
SAVE_FIELDS = frozenset({"app", "name", "kind", "description", "params"})
RUN_FIELDS = frozenset({"from", "to", "last_days", "tz"})
RUN_PROPERTIES: dict[str, Schema] = {
    k: v for k, v in KINDS["funnel"].schema()["properties"].items() if k in RUN_FIELDS
}
RUN_BODY = {
    "type": "object",
    "additionalProperties": False,
    "properties": RUN_PROPERTIES,
    "description": "override the saved time range or zone for this run",
}
ITEM = SAVED + "/{app}/{name}"
ITEM_PARAMS = {"app": pattern_schema(ID_RE), "name": pattern_schema(saved.NAME_RE)}


def _path_app(request: web.Request) -> str:
    app = request.match_info["app"]
    if not ID_RE.fullmatch(app):
        raise bad("app", "not an app name")
    return app


@api.route(
    "POST",
    SAVED,
    summary="Save a report (create, or replace the one of that name)",
    tag="analytics-reports",
    roles=ANALYST,
    body=SAVE_BODY,
    responses={201: "created", 200: "replaced"},
)
async def save_report(request: web.Request) -> web.Response:
    data = await read_object(request, MAX_BODY)
    unknown = sorted(set(data) - SAVE_FIELDS)
    if unknown:
        raise bad(unknown[0], "not a field of a saved report")
    app = required_str(data, "app", max_len=200)
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise bad("params", "an object")
    row, created = await saved.save(
        request.app[DB],
        actor_of(request),
        app,
        required_str(data, "name", max_len=128),
        required_str(data, "kind", max_len=32),
        params,
        validate_saved,
        description=field_str(data, "description", required=False, max_len=1000) or "",
    )
    return json_response(saved.saved_dict(row, app), status=201 if created else 200)


@api.route(
    "GET",
    SAVED,
    summary="List an app's saved reports",
    tag="analytics-reports",
    roles=ANALYST,
    query={"app": pattern_schema(ID_RE), "kind": {"enum": list(KINDS)}, **PAGE_QUERY},
    required=("app",),
)
async def list_reports(request: web.Request) -> web.Response:
    app = request.query.get("app", "")
    if not ID_RE.fullmatch(app):
        raise bad("app", "required: the app's name")
    kind = request.query.get("kind") or None
    if kind is not None:
        kind_of(kind)
    limit, offset = pagination(request)
    rows, total = await saved.list_saved(request.app[DB], app, kind=kind, limit=limit, offset=offset)
    return json_response(page([saved.saved_dict(r, app) for r in rows], total, limit, offset))


@api.route(
    "GET", ITEM, summary="Show a saved report", tag="analytics-reports", roles=ANALYST, params=ITEM_PARAMS
)
async def show_report(request: web.Request) -> web.Response:
    app = _path_app(request)
    row = await saved.get_saved(request.app[DB], app, saved.check_name(request.match_info["name"]))
    return json_response(saved.saved_dict(row, app))


@api.route(
    "DELETE",
    ITEM,
    summary="Delete a saved report",
    tag="analytics-reports",
    roles=ANALYST,
    responses={204: "deleted"},
    params=ITEM_PARAMS,
)
async def delete_report(request: web.Request) -> web.Response:
    app = _path_app(request)
    await saved.delete(request.app[DB], actor_of(request), app, saved.check_name(request.match_info["name"]))
    return web.Response(status=204)


async def _run_saved(request: web.Request) -> web.Response:
    app = _path_app(request)
    row = await saved.get_saved(request.app[DB], app, saved.check_name(request.match_info["name"]))
    overrides = await _raw(request, empty_ok=True)
    unknown = sorted(set(overrides) - RUN_FIELDS)
    if unknown:
        raise bad(unknown[0], "a run may override only from, to, last_days and tz")
    params = dict(row.params)
    if overrides.keys() & {"from", "to", "last_days"}:
        for key in ("from", "to", "last_days"):
            params.pop(key, None)
    call = prepare(kind_of(row.kind), {**params, **overrides, "app": app}, _now(request))
    return await _run(request, call, saved=row.name)


@api.route(
    "GET",
    ITEM + "/run",
    summary="Run a saved report (from, to, last_days and tz may override its own)",
    tag="analytics-reports",
    roles=ANALYST,
    query=RUN_PROPERTIES,
    params=ITEM_PARAMS,
)
async def run_saved_get(request: web.Request) -> web.Response:
    return await _run_saved(request)


@api.route(
    "POST",
    ITEM + "/run",
    summary="Run a saved report (from, to, last_days and tz may override its own)",
    tag="analytics-reports",
    roles=ANALYST,
    body=RUN_BODY,
    params=ITEM_PARAMS,
)
async def run_saved_post(request: web.Request) -> web.Response:
    return await _run_saved(request)
