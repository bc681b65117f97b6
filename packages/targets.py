"""TUF target names for what the packages domain stores.

One naming scheme shared by the signing domain (which signs the targets) and the
update check (which tells clients which target to verify a download against).
"""

from __future__ import annotations

from mpaas.packages.models import Package


def full_target(pkg: Package) -> str:
    return f"{pkg.kind}/{pkg.package_id}/{pkg.version}/full.zip"


def delta_target(pkg: Package, base: Package) -> str:
    return f"{pkg.kind}/{pkg.package_id}/{pkg.version}/from-{base.version}.patch"


def manifest_target(pkg: Package) -> str:
    return f"{pkg.kind}/{pkg.package_id}/{pkg.version}/manifest.json"
