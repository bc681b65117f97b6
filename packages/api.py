"""Admin HTTP API of the packages domain: resumable uploads, publish, list, show, download."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from mpaas.appkeys import BLOBS, DB
from mpaas.errors import MpaasError, ValidationError
from mpaas.identity import tenancy
from mpaas.identity.guard import actor_of
from mpaas.identity.models import App
from mpaas.packages.errors import PackageNotFound
from mpaas.packages.models import KINDS, Package
from mpaas.packages.service import PackageService, delta_dict, package_dict
from mpaas.packages.service_key import PACKAGES
from mpaas.packages.spec import PublishSpec
from mpaas.web.api import (
    Api,
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
RM = ("release-manager",)
BASE = "/api/v1/apps/{app}"
PKG = BASE + "/packages/{kind}/{id}/{version}"
SHA_PATTERN = "^[0-9a-f]{64}$"

UPLOAD_BODY = {
    "type": "object",
    "required": ["size"],
    "properties": {
        "size": {"type": "integer", "minimum": 1},
        "sha256": {"type": "string", "pattern": SHA_PATTERN},
    },
}
PUBLISH_BODY = {
    "type": "object",
    "required": ["upload_id", "kind", "id", "version"],
    "properties": {
        "upload_id": {"type": "string"},
        "kind": {"enum": list(KINDS)},
        "id": {"type": "string"},
        "version": {"type": "string"},
        "description": {"type": "string"},
        "entry": {"type": "string", "description": "offline: entry page (default index.html)"},
        "vhost": {"type": "string", "description": "offline: virtual host the app maps to local files"},
        "target_binary_range": {"type": "string", "description": "hotfix/bundle: e.g. '>=5.2 <6'"},
        "platform": {"enum": ["ios", "android"]},
        "patch_type": {"enum": ["dex", "so", "resource", "script"]},
    },
}


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
    body=UPLOAD_BODY,
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
    "GET", BASE + "/uploads/{upload_id}", summary="An upload's offset, to resume it", tag="packages", roles=RM
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
    query={"offset": "int"},
    raw_body="application/octet-stream",
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


@api.route("DELETE", BASE + "/uploads/{upload_id}", summary="Abandon an upload", tag="packages", roles=RM)
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
    svc, actor = _service(request), actor_of(request)
    if "application/x-ndjson" not in request.headers.get("Accept", ""):
        result = await svc.publish(app, actor, upload_id, spec)
        body = _publish_body(result.package, result.deltas, app.name, result.created)
        return json_response(body, status=201 if result.created else 200)

    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.create_task(
        svc.publish(
            app,
            actor,
            upload_id,
            spec,
            lambda st, d, t: queue.put_nowait({"stage": st, "done": d, "total": t}),
        )
    )
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    while not task.done() or not queue.empty():
        getter = asyncio.ensure_future(queue.get())
        await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            await response.write(dumps({"progress": getter.result()}) + b"\n")
        else:
            getter.cancel()
    try:
        result = task.result()
        line: dict[str, Any] = {
            "result": _publish_body(result.package, result.deltas, app.name, result.created)
        }
    except MpaasError as exc:
        line = {**exc.to_dict(), "status": exc.status}
    await response.write(dumps(line) + b"\n")
    await response.write_eof()
    return response


def _publish_body(pkg: Package, deltas: list[Any], app_name: str, created: bool) -> dict[str, Any]:
    return package_dict(pkg, app_name) | {
        "created": created,
        "deltas": [{"from_pk": d.from_pk, "size": d.patch_size} for d in deltas],
    }


@api.route(
    "GET",
    BASE + "/packages",
    summary="List package versions, newest first",
    tag="packages",
    roles=RM,
    query={"kind": "string", "id": "string", "limit": "int", "offset": "int"},
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
)
async def show_package(request: web.Request) -> web.Response:
    app, pkg = await _package(request)
    svc = _service(request)
    body = package_dict(pkg, app.name) | {"deltas": [delta_dict(d, b) for d, b in await svc.deltas(pkg)]}
    if request.query.get("files") in ("1", "true"):
        body["files"] = [f.to_dict() for f in (await svc.manifest(pkg)).files]
    return json_response(body)


@api.route("GET", PKG + "/manifest", summary="A package's file manifest", tag="packages", roles=RM)
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
    query={"from": "string"},
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
    if found is not None:
        body["delta"] = delta_dict(*found)
    return json_response(body)
