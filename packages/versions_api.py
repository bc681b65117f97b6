"""Package versions beyond publish: delete a mistaken one, and what signing does for an app.

:mod:`mpaas.packages.api` extends its :class:`~mpaas.web.api.Api` with this module's, so
the routes mount with the rest of the domain.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import delete, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from mpaas.appkeys import DB
from mpaas.errors import Conflict, ValidationError
from mpaas.identity import tenancy
from mpaas.identity.audit import Actor, record
from mpaas.identity.guard import actor_of
from mpaas.identity.models import App
from mpaas.packages.api_schemas import PKG_PARAMS
from mpaas.packages.models import KINDS, Package, PackageDelta, PackageFile
from mpaas.packages.service import package_dict
from mpaas.packages.service_key import PACKAGES
from mpaas.packages.targets import delta_target, full_target, manifest_target
from mpaas.signing.service_key import SIGNING
from mpaas.storage.db import Database
from mpaas.web.api import Api, json_response

api = Api()


class PackageReleased(Conflict):
    code = "package_released"


class SigningRequired(Conflict):
    code = "signing_required"


def check_flag(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise ValidationError(f"field {name!r} must be a boolean")
    return value


async def signing_state(request: web.Request, app: App) -> dict[str, Any]:
    """``signed`` (the app has TUF keys, so its packages are TUF targets) and a sentence for people."""
    signing = request.app.get(SIGNING)
    signed = signing is not None and await signing.has_repository(app.name)
    note = (
        "signed: TUF targets of the app's repository"
        if signed
        else f"NOT signed: app {app.name!r} has no TUF keys (run `mpaas keys init --app {app.name}`)"
    )
    return {"signed": signed, "signing": note}


async def check_publish_allowed(app: App, state: dict[str, Any]) -> None:
    """An app that requires signing refuses publishes while it has no TUF keys."""
    if app.require_signing and not state["signed"]:
        raise SigningRequired(
            f"app {app.name!r} requires signing but has no TUF keys: run `mpaas keys init --app {app.name}` "
            "on the server host, or `mpaas apps update --no-require-signing`"
        )


async def delete_package(db: Database, actor: Actor, app: App, pkg: Package) -> list[str]:
    """Delete a version that was never released, with its files, its deltas and those built on it.

    Returns the TUF target names that went with it. A version any release ever pointed at
    (rolled back included) is refused: a release's history must stay readable. Its blobs
    become unreferenced and ``mpaas gc`` removes them.
    """
    names = [full_target(pkg), manifest_target(pkg)]
    label = f"{pkg.kind} {pkg.package_id} {pkg.version}"
    try:
        async with db.write() as s:
            deltas = (
                await s.exec(
                    select(PackageDelta).where(
                        or_(col(PackageDelta.to_pk) == pkg.id, col(PackageDelta.from_pk) == pkg.id)
                    )
                )
            ).all()
            others = {d.to_pk if d.from_pk == pkg.id else d.from_pk for d in deltas}
            by_pk = {
                p.id: p for p in (await s.exec(select(Package).where(col(Package.id).in_(others)))).all()
            }
            for d in deltas:
                if d.to_pk == pkg.id and d.from_pk in by_pk:
                    names.append(delta_target(pkg, by_pk[d.from_pk]))
                elif d.from_pk == pkg.id and d.to_pk in by_pk:
                    names.append(delta_target(by_pk[d.to_pk], pkg))
            ids = [d.id for d in deltas]
            if ids:
                await s.exec(delete(PackageDelta).where(col(PackageDelta.id).in_(ids)))
            await s.exec(delete(PackageFile).where(col(PackageFile.package_pk) == pkg.id))
            await s.exec(delete(Package).where(col(Package.id) == pkg.id))
            await s.flush()
            record(
                s,
                actor,
                "package.delete",
                f"package:{app.name}/{pkg.kind}/{pkg.package_id}/{pkg.version}",
                app=app.name,
                detail={"package_hash": pkg.package_hash, "deltas_removed": len(ids)},
            )
    except IntegrityError:
        raise PackageReleased(
            f"{label} was released; a released version cannot be deleted (roll it back instead)"
        ) from None
    return names


@api.route(
    "DELETE",
    "/api/v1/apps/{app}/packages/{kind}/{id}/{version}",
    summary="Delete a package version that was never released (a mistaken upload)",
    tag="packages",
    roles=("release-manager",),
    params=PKG_PARAMS,
    responses={409: "the version was released"},
)
async def delete_package_handler(request: web.Request) -> web.Response:
    app = await tenancy.get_app(request.app[DB], request.match_info["app"])
    kind = request.match_info["kind"]
    if kind not in (*KINDS, "any"):
        raise ValidationError(f"kind must be one of {', '.join(KINDS)} (or 'any')")
    svc = request.app[PACKAGES]
    pkg = await svc.get(
        app, None if kind == "any" else kind, request.match_info["id"], request.match_info["version"]
    )
    names = await delete_package(request.app[DB], actor_of(request), app, pkg)
    signing = request.app.get(SIGNING)
    removed: list[str] = []
    if signing is not None and await signing.has_repository(app.name):
        present = await signing.repo.list_targets(app.name)
        removed = [name for name in names if name in present]
        await signing.repo.remove_targets(app.name, removed)
    return json_response(package_dict(pkg, app.name) | {"deleted": True, "tuf_targets_removed": removed})
