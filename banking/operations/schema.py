"""Input schemas of operations added at run time: a small JSON Schema subset → a pydantic model.

Accepted: ``{"type": "object", "properties": {...}, "required": [...]}`` whose properties
are ``string`` (``minLength``, ``maxLength``, ``pattern``, ``enum``), ``integer`` and
``number`` (``minimum``, ``maximum``), or ``boolean``, each with an optional
``description``. Unknown fields in a call are refused, types are strict (``"5"`` is not
an integer), and strings are at most 4,096 characters unless the schema says less.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from mpaas.banking.errors import InvalidOperation

PROPERTY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}
KEYS = {"type", "description", "minLength", "maxLength", "pattern", "minimum", "maximum", "enum"}
MAX_STRING = 4096


def _number(spec: dict[str, Any], key: str) -> float | None:
    value = spec.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise InvalidOperation(f"schema: {key} must be a number")
    return value


def _field(name: str, spec: Any, required: bool) -> tuple[Any, Any]:
    if not isinstance(spec, dict) or spec.get("type") not in TYPES:
        raise InvalidOperation(f"schema: property {name!r} needs a type: {', '.join(TYPES)}")
    unknown = set(spec) - KEYS
    if unknown:
        raise InvalidOperation(f"schema: property {name!r} has unsupported keywords {sorted(unknown)}")
    kind = TYPES[spec["type"]]
    kw: dict[str, Any] = {"description": str(spec.get("description", ""))[:200] or None}
    annotation: Any = kind
    if kind is str:
        pattern = spec.get("pattern")
        if pattern is not None:
            if not isinstance(pattern, str) or len(pattern) > 256:
                raise InvalidOperation(
                    f"schema: pattern of {name!r} must be a string of at most 256 characters"
                )
            try:
                re.compile(pattern)
            except re.error:
                raise InvalidOperation(f"schema: pattern of {name!r} is not a regular expression") from None
            kw["pattern"] = pattern
        kw["min_length"] = _number(spec, "minLength")
        kw["max_length"] = min(int(_number(spec, "maxLength") or MAX_STRING), MAX_STRING)
        enum = spec.get("enum")
        if enum is not None:
            if not isinstance(enum, list) or not enum or not all(isinstance(v, str) for v in enum):
                raise InvalidOperation(f"schema: enum of {name!r} must be a list of strings")
            annotation = Literal[tuple(enum)]
            kw = {"description": kw["description"]}
    elif kind in (int, float):
        kw["ge"], kw["le"] = _number(spec, "minimum"), _number(spec, "maximum")
    default = ... if required else None
    if not required:
        annotation = annotation | None
    return annotation, Field(default, **{k: v for k, v in kw.items() if v is not None})


def model_from_schema(title: str, schema: Any) -> type[BaseModel]:
    if not isinstance(schema, dict):
        raise InvalidOperation("schema must be a JSON object")
    if not schema:
        schema = {"type": "object", "properties": {}}
    if schema.get("type") != "object" or not isinstance(schema.get("properties", {}), dict):
        raise InvalidOperation('schema must be {"type": "object", "properties": {...}}')
    properties: dict[str, Any] = schema.get("properties", {})
    required = schema.get("required", [])
    if not isinstance(required, list) or not set(required) <= set(properties):
        raise InvalidOperation("schema: required must list names of properties")
    if len(properties) > 64:
        raise InvalidOperation("schema: at most 64 properties")
    fields: dict[str, Any] = {}
    for name, spec in properties.items():
        if not isinstance(name, str) or PROPERTY_RE.fullmatch(name) is None:
            raise InvalidOperation(f"schema: property name {name!r} must be an identifier")
        fields[name] = _field(name, spec, name in required)
    config = ConfigDict(extra="forbid", strict=True)
    model: type[BaseModel] = create_model(title, __config__=config, **fields)
    return model
