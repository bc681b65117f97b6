"""Client routes of the CodePush protocol: update checks and status reports.

Both spellings are served: ``/v0.1/public/codepush/...`` (snake_case) and the legacy
camelCase ``/updateCheck`` and ``/reportStatus/...``.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from mpaas.packages.protocols import codepush as cp
from mpaas.packages.protocols.common import blob_links, channel_by_key, runtime_of
from mpaas.packages.releases.channel_index import ChannelIndex, Lineage, now
from mpaas.packages.releases.errors import InvalidReport
from mpaas.web.api import Api, Schema, dumps, read_object, refuse_oversized
from mpaas.web.complete_response import CompleteResponse

api = Api()
_SHORT: Schema = {"type": "string", "maxLength": 256}
#: Query of the update check, snake_case (the legacy camelCase route spells the same names so).
CHECK_QUERY: dict[str, Schema] = {
    "deployment_key": {"type": "string", "minLength": 1, "maxLength": 256},
    "app_version": {"type": "string", "minLength": 1, "maxLength": 64},
    "package_hash": _SHORT,
    "label": _SHORT,
    "client_unique_id": {"type": "string", "maxLength": 128},
    "is_companion": {"enum": ["true", "false"]},
}
LEGACY_NAMES = {
    "deployment_key": "deploymentKey",
    "app_version": "appVersion",
    "package_hash": "packageHash",
    "client_unique_id": "clientUniqueId",
    "is_companion": "isCompanion",
}
LEGACY_CHECK_QUERY: dict[str, Schema] = {LEGACY_NAMES.get(k, k): v for k, v in CHECK_QUERY.items()}


def _report_body(*, deploy: bool) -> dict[str, Any]:
    """A status report; either spelling of each field is accepted (snake_case shown)."""
    properties: dict[str, Any] = {
        "deployment_key": {"type": "string", "maxLength": 256, "description": "or deploymentKey"},
        "label": {"type": "string", "maxLength": 256},
        "app_version": {"type": "string", "maxLength": 64},
        "client_unique_id": {"type": "string", "maxLength": 128},
        "previous_label_or_app_version": {"type": "string", "maxLength": 256},
        "previous_deployment_key": {"type": "string", "maxLength": 256},
    }
    if deploy:
        properties["status"] = {"enum": ["DeploymentSucceeded", "DeploymentFailed"]}
    return {"type": "object", "required": ["status"] if deploy else [], "properties": properties}


DEPLOY_REPORT_BODY = _report_body(deploy=True)
DOWNLOAD_REPORT_BODY = _report_body(deploy=False)
#: Body limits (docs/protocol.md): a status report is a dozen short fields; checks are GETs.
REPORT_LIMIT = 16 * 1024
NO_BODY_LIMIT = 4 * 1024


async def _codepush_info(request: web.Request) -> dict[str, Any]:
    refuse_oversized(request, NO_BODY_LIMIT)
    rt = runtime_of(request)
    check = cp.parse_check(request.query)
    channel = await channel_by_key(rt, check.deployment_key)
    index = await rt.index.get(channel)
    decision, _lineage = cp.decide(index, check, now())
    diff = None
    if decision is not None:
        if decision.target is not None:
            rt.index.checks.add(decision.target.id)
        target = decision.target
        if decision.action == "update" and target is not None and target.package and check.package_hash:
            diff = await rt.diffs.get(target.package, check.package_hash)
    return cp.update_info(check, decision, blob_links(request, rt), diff)


@api.route(
    "GET",
    "/v0.1/public/codepush/update_check",
    summary="CodePush update check (snake_case)",
    tag="codepush",
    auth="client",
    query=CHECK_QUERY,
    required=("deployment_key", "app_version"),
)
async def codepush_update_check(request: web.Request) -> web.StreamResponse:
    return CompleteResponse(dumps({"update_info": await _codepush_info(request)}))


@api.route(
    "GET",
    "/updateCheck",
    summary="CodePush update check, legacy camelCase",
    tag="codepush",
    auth="client",
    query=LEGACY_CHECK_QUERY,
    required=("deploymentKey", "appVersion"),
)
async def codepush_update_check_legacy(request: web.Request) -> web.StreamResponse:
    return CompleteResponse(dumps({"updateInfo": cp.legacy(await _codepush_info(request))}))


def _release_by_label(index: ChannelIndex, label: str | None) -> tuple[Lineage | None, int | None]:
    lineage = index.default_lineage("bundle")
    if lineage is None or not label:
        return lineage, None
    for r in lineage.releases:
        if r.label == label:
            return lineage, r.id
    return lineage, None


async def _codepush_report(request: web.Request, kind: str) -> web.Response:
    rt = runtime_of(request)
    data = await read_object(request, REPORT_LIMIT)
    key = cp.param(data, "deployment_key", "deploymentKey")
    channel = await channel_by_key(rt, key)
    index = await rt.index.get(channel)
    lineage, release_id = _release_by_label(index, cp.param(data, "label", "label"))
    client_id = cp.param(data, "client_unique_id", "clientUniqueId") or ""
    if lineage is None or release_id is None:
        return web.Response(text="OK")  # a report about the binary's own version
    if kind == "download":
        event = "download_succeeded"
    else:
        status = cp.param(data, "status", "status")
        event = {"DeploymentSucceeded": "install_succeeded", "DeploymentFailed": "install_failed"}.get(
            status or "", ""
        )
        if not event:
            raise InvalidReport("status must be DeploymentSucceeded or DeploymentFailed")
    previous_id = None
    previous = cp.param(data, "previous_label_or_app_version", "previousLabelOrAppVersion")
    previous_key = cp.param(data, "previous_deployment_key", "previousDeploymentKey")
    if previous and previous_key in (None, key):
        _lin, previous_id = _release_by_label(index, previous)
    normalized = {k: cp.param(data, k, k) for k in ("label", "status", "app_version")}
    event_id = cp.report_event_id(kind, normalized | {"client": client_id})
    if not client_id:
        event_id += ":" + secrets.token_hex(8)  # without a client id, reports cannot be matched
    await rt.service.report(
        channel.app_id, release_id, event, event_id, device_id=client_id, previous_release_id=previous_id
    )
    return web.Response(text="OK")


@api.route(
    "POST",
    "/v0.1/public/codepush/report_status/deploy",
    summary="CodePush deploy report",
    tag="codepush",
    auth="client",
    body=DEPLOY_REPORT_BODY,
)
async def codepush_report_deploy(request: web.Request) -> web.Response:
    return await _codepush_report(request, "deploy")


@api.route(
    "POST",
    "/v0.1/public/codepush/report_status/download",
    summary="CodePush download report",
    tag="codepush",
    auth="client",
    body=DOWNLOAD_REPORT_BODY,
)
async def codepush_report_download(request: web.Request) -> web.Response:
    return await _codepush_report(request, "download")


@api.route(
    "POST",
    "/reportStatus/deploy",
    summary="CodePush deploy report, legacy",
    tag="codepush",
    auth="client",
    body=DEPLOY_REPORT_BODY,
)
async def codepush_report_deploy_legacy(request: web.Request) -> web.Response:
    return await _codepush_report(request, "deploy")


@api.route(
    "POST",
    "/reportStatus/download",
    summary="CodePush download report, legacy",
    tag="codepush",
    auth="client",
    body=DOWNLOAD_REPORT_BODY,
)
async def codepush_report_download_legacy(request: web.Request) -> web.Response:
    return await _codepush_report(request, "download")
