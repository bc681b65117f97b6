"""OpenAPI schemas of the packages API: what its handlers accept, for SDK authors and clients.

Each pattern is the one the service checks with ``fullmatch`` (see :mod:`mpaas.packages.spec`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mpaas.appkeys import SETTINGS
from mpaas.packages.intake.uploads import UPLOAD_ID_RE
from mpaas.packages.models import KINDS
from mpaas.packages.spec import ID_RE, PATCH_TYPES, PLATFORMS, VERSION_RE
from mpaas.web.api import pattern_schema

SHA_PATTERN = "^[0-9a-f]{64}$"
#: What :meth:`mpaas.packages.semver.Version.parse` reads, within VERSION_RE's 64 characters.
SEMVER_PATTERN = r"(?=.{1,64}$)v?[0-9]{1,9}(?:\.[0-9]{1,9}){0,2}(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?"
PACKAGE_ID_SCHEMA = pattern_schema(ID_RE)
VERSION_SCHEMA = pattern_schema(VERSION_RE)
#: Path parameters of every route under ``PKG``.
PKG_PARAMS = {"kind": {"enum": [*KINDS, "any"]}, "id": PACKAGE_ID_SCHEMA, "version": VERSION_SCHEMA}
UPLOAD_PARAMS = {"upload_id": pattern_schema(UPLOAD_ID_RE)}
_COMPARATOR = r"(?:>=|<=|>|<|=|\^|~)?[0-9]{1,9}(?:\.(?:[0-9]{1,9}|x)){0,2}"
#: The common part of what :func:`mpaas.packages.semver.check_range` accepts (it also
#: takes ``||`` alternatives, hyphen ranges and pre-release tags).
RANGE_SCHEMA = pattern_schema(
    rf"\*|{_COMPARATOR}(?: {_COMPARATOR}){{0,3}}",
    maxLength=256,
    description="a version range such as '>=5.2 <6', '^1.2' or '1.x' (docs/packages.md)",
)


def upload_body(app: web.Application) -> dict[str, Any]:
    """The upload body; ``size`` is bounded by ``MPAAS_MAX_UPLOAD_BYTES``."""
    return {
        "type": "object",
        "required": ["size"],
        "properties": {
            "size": {"type": "integer", "minimum": 1, "maximum": app[SETTINGS].max_upload_bytes},
            "sha256": {"type": "string", "pattern": SHA_PATTERN},
        },
    }


PUBLISH_BODY = {
    "type": "object",
    "required": ["upload_id", "kind", "id", "version"],
    "properties": {
        "upload_id": pattern_schema(UPLOAD_ID_RE),
        "kind": {"enum": list(KINDS)},
        "id": PACKAGE_ID_SCHEMA,
        "version": VERSION_SCHEMA,
        "description": {"type": "string", "maxLength": 4000},
        "entry": {
            "type": "string",
            "maxLength": 4000,
            "description": "offline: entry page (default index.html)",
        },
        "vhost": pattern_schema(
            r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?){0,3}",
            description="offline: virtual host the app maps to local files (a lowercase host name)",
        ),
        "target_binary_range": RANGE_SCHEMA,
        "platform": {"enum": list(PLATFORMS)},
        "patch_type": {"enum": list(PATCH_TYPES)},
        "allow_nonsemver": {
            "type": "boolean",
            "description": "accept a version that is not semver (default: refused)",
        },
    },
    "allOf": [
        {
            "if": {"required": ["kind"], "properties": {"kind": {"const": "hotfix"}}},
            "then": {"required": ["target_binary_range", "platform", "patch_type"]},
        },
        {
            "if": {
                "not": {"required": ["allow_nonsemver"], "properties": {"allow_nonsemver": {"const": True}}}
            },
            "then": {"properties": {"version": pattern_schema(SEMVER_PATTERN)}},
        },
    ],
}
