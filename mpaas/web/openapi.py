"""Builds the OpenAPI 3.1 document from the registered endpoints."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from mpaas import __version__
from mpaas.web.api import LIMIT_SCHEMA, OFFSET_SCHEMA, Api, Endpoint, Schema

API_KEY: web.AppKey[Api] = web.AppKey("api", Api)
PARAM_RE = re.compile(r"\{(\w+)(?::[^}]*)?\}")
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
#: What holds for every operation and cannot be said per schema.
DESCRIPTION = (
    "No string, in a path, query or body, may hold U+0000 (NUL): such a request is refused "
    "with 400. JSON numbers with a zero fraction (2.0) are integers, as JSON Schema says."
)
QUERY_TYPES = {"int": {"type": "integer"}, "string": {"type": "string"}, "bool": {"type": "boolean"}}
#: ``limit`` and ``offset`` mean the same everywhere (:func:`mpaas.web.api.pagination`).
NAMED_QUERY: dict[str, Schema] = {"limit": LIMIT_SCHEMA, "offset": OFFSET_SCHEMA}


def openapi_path(path: str) -> str:
    """aiohttp's ``{name:regex}`` becomes OpenAPI's ``{name}``."""
    return PARAM_RE.sub(lambda m: "{" + m.group(1) + "}", path)


def _query_schema(name: str, spec: str | Schema) -> Schema:
    if not isinstance(spec, str):
        return spec
    if spec == "int" and name in NAMED_QUERY:
        return NAMED_QUERY[name]
    return QUERY_TYPES.get(spec, {"type": "string"})


def _path_schema(ep: Endpoint, name: str, shared: dict[str, Schema]) -> Schema:
    return ep.params.get(name) or shared.get(name) or {"type": "string", "minLength": 1}


def _operation(ep: Endpoint, shared: dict[str, Schema], app: web.Application) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _path_schema(ep, name, shared)}
        for name in PARAM_RE.findall(ep.path)
    ]
    params += [
        {"name": k, "in": "query", "required": k in ep.required, "schema": _query_schema(k, v)}
        for k, v in ep.query.items()
    ]
    params += [
        {"name": k, "in": "header", "required": k in ep.required, "schema": v} for k, v in ep.headers.items()
    ]
    responses: dict[str, Any] = {str(code): {"description": text} for code, text in ep.responses.items()}
    responses.setdefault("200", {"description": "OK"}) if not any(
        str(c).startswith("2") for c in ep.responses
    ) else None
    err = {
        "description": "error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    responses.setdefault("4XX", err)
    op: dict[str, Any] = {
        "operationId": f"{ep.method.lower()}_{ep.handler.__name__}",
        "summary": ep.summary,
        "tags": [ep.tag],
        "parameters": params,
        "responses": responses,
    }
    if ep.auth == "admin":
        op["security"] = [{"bearer": []}]
        op["x-roles"] = sorted({"admin", *ep.roles})
    elif ep.auth == "client":
        op["x-auth"] = "deployment key"
    if ep.body is not None:
        schema = ep.body(app) if callable(ep.body) else ep.body
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    elif ep.raw_body is not None:  # one media type, or several separated by commas
        op["requestBody"] = {
            "required": True,
            "content": {
                media.strip(): {"schema": {"type": "string", "format": "binary"}}
                for media in ep.raw_body.split(",")
            },
        }
    return op


def build_openapi(app: web.Application) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    api = app[API_KEY]
    for ep in api.endpoints:
        paths.setdefault(openapi_path(ep.path), {})[ep.method.lower()] = _operation(
            ep, api.shared_params, app
        )
    return {
        "openapi": "3.1.0",
        "info": {"title": "mpaas", "version": __version__, "description": DESCRIPTION},
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR_SCHEMA},
        },
    }
