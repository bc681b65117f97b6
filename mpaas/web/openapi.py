"""Builds the OpenAPI 3.1 document from the registered endpoints."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from mpaas import __version__
from mpaas.web.api import Api, Endpoint

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
QUERY_TYPES = {"int": {"type": "integer"}, "string": {"type": "string"}, "bool": {"type": "boolean"}}


def openapi_path(path: str) -> str:
    """aiohttp's ``{name:regex}`` becomes OpenAPI's ``{name}``."""
    return PARAM_RE.sub(lambda m: "{" + m.group(1) + "}", path)


def _operation(ep: Endpoint) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in PARAM_RE.findall(ep.path)
    ]
    params += [
        {"name": k, "in": "query", "schema": QUERY_TYPES.get(v, {"type": "string"})}
        for k, v in ep.query.items()
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
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ep.body}}}
    elif ep.raw_body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {ep.raw_body: {"schema": {"type": "string", "format": "binary"}}},
        }
    return op


def build_openapi(app: web.Application) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for ep in app[API_KEY].endpoints:
        paths.setdefault(openapi_path(ep.path), {})[ep.method.lower()] = _operation(ep)
    return {
        "openapi": "3.1.0",
        "info": {"title": "mpaas", "version": __version__},
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR_SCHEMA},
        },
    }
