"""Admin routes that change what is already live: patch a release, rename a channel.

:mod:`mpaas.packages.releases.api` extends its :class:`~mpaas.web.api.Api` with this one.
A channel rename lives here, not in identity, because the channel's name is signed into
the TUF targets of everything it offers: the release service re-signs those sets.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mpaas.appkeys import DB
from mpaas.errors import ValidationError
from mpaas.identity import lifecycle, tenancy
from mpaas.identity.guard import actor_of
from mpaas.identity.tenancy import NAME_RE
from mpaas.packages.releases.key import RELEASES
from mpaas.packages.releases.views import release_dict
from mpaas.web.api import (
    ID_SCHEMA,
    Api,
    field_str,
    json_response,
    path_id,
    pattern_schema,
    read_object,
    required_str,
)

api = Api()

PATCH_FIELDS = ("description", "mandatory", "rollout")
PATCH_BODY = {
    "type": "object",
    "minProperties": 1,
    "additionalProperties": False,
    "properties": {
        "description": {"type": "string", "maxLength": 4000},
        "mandatory": {"type": "boolean"},
        "rollout": {"type": "number", "minimum": 0, "maximum": 100},
    },
}


def _optional(data: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(name)
    if value is not None and (isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind)):
        raise ValidationError(f"field {name!r} has the wrong type")
    return value


@api.route(
    "PATCH",
    "/api/v1/apps/{app}/releases/{release_id}",
    summary="Change a live release's description, mandatory flag or rollout",
    tag="releases",
    roles=("release-manager",),
    body=PATCH_BODY,
    params={"release_id": ID_SCHEMA},
)
async def patch_release(request: web.Request) -> web.Response:
    data = await read_object(request)
    unknown = sorted(set(data) - set(PATCH_FIELDS))
    if unknown:
        raise ValidationError(f"unknown field {unknown[0]!r}; give description, mandatory or rollout")
    rollout = _optional(data, "rollout", (int, float))
    app = await tenancy.get_app(request.app[DB], request.match_info["app"])
    view = await request.app[RELEASES].service.patch(
        app,
        actor_of(request),
        path_id(request, "release_id"),
        description=field_str(data, "description", required=False, max_len=4000),
        mandatory=_optional(data, "mandatory", bool),
        rollout=float(rollout) if rollout is not None else None,
    )
    return json_response(release_dict(view, app.name))


@api.route(
    "PATCH",
    "/api/v1/apps/{app}/channels/{channel}",
    summary="Rename a channel (its deployment key and releases stay)",
    tag="apps",
    roles=("admin",),
    body={"type": "object", "required": ["name"], "properties": {"name": pattern_schema(NAME_RE)}},
    responses={409: "the new name exists"},
)
async def rename_channel(request: web.Request) -> web.Response:
    data = await read_object(request)
    new_name = required_str(data, "name", max_len=63)
    db, app_name = request.app[DB], request.match_info["app"]
    row = await lifecycle.rename_channel(
        db, actor_of(request), app_name, request.match_info["channel"], new_name
    )
    runtime = request.app[RELEASES]
    await runtime.index.load_keys()
    if row.id is not None:
        await runtime.service.channel_renamed(await tenancy.get_app(db, app_name), row.id)
    return json_response(tenancy.channel_dict(row, app_name))
