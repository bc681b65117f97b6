"""Admin HTTP API of the packages domain: resumable uploads, publish, list, show, download."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from aiohttp import web

from mpaas.appkeys import BLOBS, DB
from mpaas.errors import MpaasError, ValidationError
from mpaas.identity import tenancy
from mpaas.identity.guard import actor_of
from mpaas.identity.models import App
from mpaas.logs import request_id_var
from mpaas.packages.api_schemas import (
    PKG_PARAMS,
    PUBLISH_BODY,
    UPLOAD_PARAMS,
    VERSION_SCHEMA,
    upload_body,
)
from mpaas.packages.errors import PackageNotFound
from mpaas.packages.models import KINDS, Package
from mpaas.packages.service import PackageService, PublishResult, delta_dict, package_dict
from mpaas.packages.service_key import PACKAGES
from mpaas.packages.spec import PublishSpec
from mpaas.packages.versions_api import api as versions_api
from mpaas.packages.versions_api import check_flag, check_publish_allowed, signing_state
from mpaas.web.api import (
    MAX_INT64,
    PAGE_QUERY,
    Api,
    OutcomeStreamResponse,
    dumps,
    field_str,
    json_response,
    page,
    pagination,
    parse_int,
    read_object,
    required_str,
)
from mpaas.web.downloads import serve_blob

api = Api()
errlog = logging.getLogger("mpaas.error")
RM = ("release-manager",)
BASE = "/api/v1/apps/{app}"
PKG = BASE + "/packages/{kind}/{id}/{version}"


async def _app(request: web.Request) -> App:
    return await tenancy.get_app(request.app[DB], request.match_info["app"])


def _service(request: web.Request) -> PackageService:
    return request.app[PACKAGES]


def _upload_dict(row: Any, chunk: int) -> dict[str, Any]:
    return {
        "upload_id": row.id,
        "size": row.size,
        "offset": row.received,
        "chunk_size": chunk,
        "expires_at": row.expires_at,
    }


@api.route(
    "POST",
    BASE + "/uploads",
    summary="Start a resumable upload",
    tag="packages",
    roles=RM,
    body=upload_body,
    responses={201: "upload session"},
)
async def create_upload(request: web.Request) -> web.Response:
    data = await read_object(request)
    size, sha = data.get("size"), data.get("sha256")
    if not isinstance(size, int) or isinstance(size, bool):
        raise ValidationError("field 'size' must be an integer")
    if sha is not None and (not isinstance(sha, str) or len(sha) != 64):
        raise ValidationError("field 'sha256' must be a hex sha256")
    svc = _service(request)
    row = await svc.uploads.create(await _app(request), actor_of(request).name, size, sha)
    return json_response(_upload_dict(row, svc.uploads.max_chunk), status=201)


@api.route(
    "GET",
    BASE + "/uploads/{upload_id}",
    summary="An upload's offset, to resume it",
    tag="packages",
    roles=RM,
    params=UPLOAD_PARAMS,
)
async def upload_status(request: web.Request) -> web.Response:
    svc = _service(request)
    row = await svc.uploads.get(await _app(request), request.match_info["upload_id"])
    return json_response(_upload_dict(row, svc.uploads.max_chunk))


@api.route(
    "PUT",
    BASE + "/uploads/{upload_id}/chunks",
    summary="Append a chunk at ?offset=N",
    tag="packages",
    roles=RM,
    query={"offset": {"type": "integer", "minimum": 0, "maximum": MAX_INT64}},
    required=("offset",),
    raw_body="application/octet-stream",
    params=UPLOAD_PARAMS,
)
async def upload_chunk(request: web.Request) -> web.Response:
    if "offset" not in request.query:
        raise ValidationError("query parameter 'offset' (an integer) is required")
    offset = parse_int(request.query["offset"], "offset")
    svc = _service(request)
    row = await svc.uploads.append(
        await _app(request), request.match_info["upload_id"], offset, request.content.iter_chunked(256 * 1024)
    )
    return json_response(_upload_dict(row, svc.uploads.max_chunk))


@api.route(
    "DELETE",
    BASE + "/uploads/{upload_id}",
    summary="Abandon an upload",
    tag="packages",
    roles=RM,
    params=UPLOAD_PARAMS,
    responses={204: "abandoned"},
)
async def abort_upload(request: web.Request) -> web.Response:
    svc = _service(request)
    row = await svc.uploads.get(await _app(request), request.match_info["upload_id"])
    await svc.uploads.discard(row.id)
    return web.Response(status=204)


def _spec(data: dict[str, Any]) -> tuple[str, PublishSpec]:
    def opt(name: str) -> str | None:
        return field_str(data, name, required=False, max_len=4000)

    upload_id = required_str(data, "upload_id", max_len=64)
    kind, pid, version = (required_str(data, n, max_len=128) for n in ("kind", "id", "version"))
    return upload_id, PublishSpec(
        kind=kind,
        package_id=pid,
        version=version,
        description=opt("description") or "",
        entry=opt("entry"),
        vhost=opt("vhost"),
        target_binary_range=opt("target_binary_range"),
        platform=opt("platform"),
        patch_type=opt("patch_type"),
        allow_nonsemver=check_flag(data, "allow_nonsemver"),
    )


@api.route(
    "POST",
    BASE + "/packages",
    summary="Publish a completed upload as a package version",
    tag="packages",
    roles=RM,
    body=PUBLISH_BODY,
    responses={201: "published", 200: "identical content was already published", 409: "version exists"},
)
async def publish(request: web.Request) -> web.StreamResponse:
    """With ``Accept: application/x-ndjson`` the answer streams progress lines, then the result."""
    upload_id, spec = _spec(await read_object(request))
    app = await _app(request)
    signing = await signing_state(request, app)
    await check_publish_allowed(app, signing)
    svc, actor = _service(request), actor_of(request)
    if "application/x-ndjson" not in request.headers.get("Accept", ""):
        result = await svc.publish(app, actor, upload_id, spec)
        body = _publish_body(result, app.name, signing)
        return json_response(body, status=201 if result.created else 200)
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def progress(stage: str, done: int, total: int) -> None:
        queue.put_nowait({"stage": stage, "done": done, "total": total})

    work = svc.publish(app, actor, upload_id, spec, progress)
    return await _stream_publish(request, work, queue, app, signing)


async def _stream_publish(
    request: web.Request,
    work: Awaitable[Any],
    queue: asyncio.Queue[dict[str, Any]],
    app: App,
    signing: dict[str, Any],
) -> web.StreamResponse:
    """Progress lines while ``work`` runs, then one final line: ``{"result": ...}`` or
    ``{"error": ..., "status": N}``, whatever ``work`` raised (a bug included: the line
    then names the request id, and the traceback goes to the log)."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # a client gone: no warning
    rid = request_id_var.get() or ""
    response = OutcomeStreamResponse(headers={"Content-Type": "application/x-ndjson", "X-Request-Id": rid})
    await response.prepare(request)
    line: dict[str, Any]
    try:
        while not task.done() or not queue.empty():
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                await response.write(dumps({"progress": getter.result()}) + b"\n")
            else:
                getter.cancel()
        result = task.result()
        line = {"result": _publish_body(result, app.name, signing)}
        response.outcome = 201 if result.created else 200
    except MpaasError as exc:
        line = {**exc.to_dict(), "status": exc.status}
        response.outcome = exc.status
    except (ConnectionResetError, asyncio.CancelledError):
        raise  # the client went away: nothing to write to
    except Exception:
        errlog.exception("publish failed", extra={"method": request.method, "path": request.path})
        message = f"internal error; request id {rid}"
        line = {"error": {"code": "internal_error", "message": message}, "status": 500}
        response.outcome = 500
    await response.write(dumps(line) + b"\n")
    await response.write_eof()
    return response


def _publish_body(result: PublishResult, app_name: str, signing: dict[str, Any]) -> dict[str, Any]:
    return (
        package_dict(result.package, app_name)
        | {
            "created": result.created,
            "deltas": [{"from_pk": d.from_pk, "size": d.patch_size} for d in result.deltas],
            "warnings": result.warnings,
        }
        | signing
    )


@api.route(
    "GET",
    BASE + "/packages",
    summary="List package versions, newest first",
    tag="packages",
    roles=RM,
    query={"kind": {"enum": list(KINDS)}, "id": "string", **PAGE_QUERY},
)
async def list_packages(request: web.Request) -> web.Response:
    limit, offset = pagination(request)
    kind = request.query.get("kind")
    if kind is not None and kind not in KINDS:
        raise ValidationError(f"kind must be one of {', '.join(KINDS)}")
    app = await _app(request)
    rows, total = await _service(request).list_packages(
        app, kind=kind, package_id=request.query.get("id"), limit=limit, offset=offset
    )
    return json_response(page([package_dict(p, app.name) for p in rows], total, limit, offset))


async def _package(request: web.Request) -> tuple[App, Package]:
    app = await _app(request)
    kind = request.match_info["kind"]
    if kind not in (*KINDS, "any"):
        raise ValidationError(f"kind must be one of {', '.join(KINDS)} (or 'any')")
    pkg = await _service(request).get(
        app, None if kind == "any" else kind, request.match_info["id"], request.match_info["version"]
    )
    return app, pkg


@api.route(
    "GET",
    PKG,
    summary="Show a package version with its deltas",
    tag="packages",
    roles=RM,
    query={"files": "bool"},
    params=PKG_PARAMS,
)
async def show_package(request: web.Request) -> web.Response:
    app, pkg = await _package(request)
    svc = _service(request)
    body = package_dict(pkg, app.name) | {"deltas": [delta_dict(d, b) for d, b in await svc.deltas(pkg)]}
    body |= await signing_state(request, app)
    if request.query.get("files") in ("1", "true"):
        body["files"] = [f.to_dict() for f in (await svc.manifest(pkg)).files]
    return json_response(body)


@api.route(
    "GET", PKG + "/manifest", summary="A package's file manifest", tag="packages", roles=RM, params=PKG_PARAMS
)
async def package_manifest(request: web.Request) -> web.StreamResponse:
    _app_row, pkg = await _package(request)
    return await serve_blob(
        request,
        request.app[BLOBS],
        pkg.manifest_sha256,
        content_type="application/json",
        allow_redirect=False,
    )


@api.route(
    "GET",
    PKG + "/archive",
    summary="Download the full package (zip; Range and ETag)",
    tag="packages",
    roles=RM,
    head=True,
    params=PKG_PARAMS,
    responses={200: "the archive", 206: "a byte range", 304: "not modified", 416: "range not satisfiable"},
)
async def package_archive(request: web.Request) -> web.StreamResponse:
    _app_row, pkg = await _package(request)
    name = f"{pkg.package_id}-{pkg.version}.zip"
    return await serve_blob(
        request, request.app[BLOBS], pkg.archive_sha256, filename=name, content_type="application/zip"
    )


@api.route(
    "GET",
    PKG + "/deltas/{from_version}",
    summary="Download the patch from an earlier version",
    tag="packages",
    roles=RM,
    head=True,
    params={**PKG_PARAMS, "from_version": VERSION_SCHEMA},
    responses={200: "the patch", 206: "a byte range", 304: "not modified", 416: "range not satisfiable"},
)
async def package_delta(request: web.Request) -> web.StreamResponse:
    _app_row, pkg = await _package(request)
    wanted = request.match_info["from_version"]
    found = await _service(request).delta_from(pkg, wanted)
    if found is None:
        raise PackageNotFound(f"no stored delta from {wanted} to {pkg.version}")
    delta_row, base = found
    name = f"{pkg.package_id}-{base.version}-to-{pkg.version}.patch"
    return await serve_blob(request, request.app[BLOBS], delta_row.patch_sha256, filename=name)


@api.route(
    "GET",
    PKG + "/diff",
    summary="What changed since an earlier version (?from=V)",
    tag="packages",
    roles=RM,
    query={"from": VERSION_SCHEMA},
    required=("from",),
    params=PKG_PARAMS,
)
async def package_diff(request: web.Request) -> web.Response:
    from mpaas.packages.deltas.stats import manifest_diff

    app, new = await _package(request)
    svc = _service(request)
    if "from" not in request.query:
        raise ValidationError("query parameter 'from' is required")
    old = await svc.get(app, new.kind, new.package_id, request.query["from"])
    body: dict[str, Any] = {
        "from": package_dict(old, app.name),
        "to": package_dict(new, app.name),
        "changes": manifest_diff(await svc.manifest(old), await svc.manifest(new)),
        "delta": None,
    }
    found = await svc.delta_from(new, old.version)
    # Payload bytes are known only from a built patch: the stored one's stats, or none.
    body["changes"]["payload_known"] = found is not None
    if found is not None:
        body["delta"] = delta_dict(*found)
        body["changes"]["summary"] = found[0].stats or body["changes"]["summary"]
    return json_response(body)


api.extend(versions_api)
