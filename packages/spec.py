"""What a publish is asked for: kind, id, version and the kind's metadata, validated."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mpaas.packages.errors import InvalidPackageMeta
from mpaas.packages.models import KINDS
from mpaas.packages.semver import InvalidVersion, Version, check_range

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")
VHOST_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
PATCH_TYPES = ("dex", "so", "resource", "script")
PLATFORMS = ("ios", "android")


@dataclass(frozen=True)
class PublishSpec:
    kind: str
    package_id: str
    version: str
    description: str = ""
    entry: str | None = None
    vhost: str | None = None
    target_binary_range: str | None = None
    platform: str | None = None
    patch_type: str | None = None
    #: Accept a version that is not ``MAJOR[.MINOR[.PATCH]][-PRE][+BUILD]`` (no order check then).
    allow_nonsemver: bool = False

    def semver(self) -> Version | None:
        """The version as semver, or None when it is not one."""
        try:
            return Version.parse(self.version)
        except InvalidVersion:
            return None

    def check_semver(self) -> None:
        """Refuse a version that is not semver unless ``allow_nonsemver``.

        The publish runs it after the archive checks, so a hostile archive is reported as such.
        """
        if not self.allow_nonsemver and self.semver() is None:
            raise InvalidPackageMeta(
                f"version {self.version!r} is not semver (MAJOR.MINOR.PATCH, e.g. 1.4.0 or 2.0.0-beta.1); "
                "versions are compared to warn about going backwards: pass --allow-nonsemver "
                "(allow_nonsemver) to publish it anyway",
                code="nonsemver_version",
            )

    def validate(self) -> dict[str, Any]:
        """Check the fields for the kind; return the metadata to store."""
        if self.kind not in KINDS:
            raise InvalidPackageMeta(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if not ID_RE.fullmatch(self.package_id):
            raise InvalidPackageMeta(f"package id {self.package_id!r} must be 1-128 of A-Z a-z 0-9 . _ -")
        if not VERSION_RE.fullmatch(self.version):
            raise InvalidPackageMeta(f"version {self.version!r} must be 1-64 of A-Z a-z 0-9 . + _ -")
        if len(self.description) > 4000:
            raise InvalidPackageMeta("description is longer than 4000 characters")
        meta: dict[str, Any] = {"description": self.description}
        if self.kind == "offline":
            meta["entry"] = self.entry or "index.html"
            if self.vhost is not None:
                if not VHOST_RE.fullmatch(self.vhost):
                    raise InvalidPackageMeta(f"vhost {self.vhost!r} is not a lowercase host name")
                meta["vhost"] = self.vhost
        elif self.kind == "bundle":
            if self.entry:
                meta["entry"] = self.entry
            if self.target_binary_range:
                meta["target_binary_range"] = check_range(self.target_binary_range)
        else:
            if not self.target_binary_range:
                raise InvalidPackageMeta(
                    "a hotfix needs --target-binary (a version range such as '>=5.2 <6')"
                )
            if self.platform not in PLATFORMS:
                raise InvalidPackageMeta(f"a hotfix needs --platform, one of {', '.join(PLATFORMS)}")
            if self.patch_type not in PATCH_TYPES:
                raise InvalidPackageMeta(f"a hotfix needs --patch-type, one of {', '.join(PATCH_TYPES)}")
            meta |= {
                "target_binary_range": check_range(self.target_binary_range),
                "platform": self.platform,
                "patch_type": self.patch_type,
            }
        return meta
