"""What a release is made from and how the API shows it: spec, view, counters, JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mpaas.errors import ValidationError
from mpaas.packages.models import KINDS, Package
from mpaas.packages.releases.models import Release, ReleaseCounter
from mpaas.packages.releases.rollout import check_whitelist, parse_rules, percent_to_bp
from mpaas.packages.semver import check_range

COUNTER_FIELDS = (
    "checks",
    "downloads",
    "download_failures",
    "installs",
    "failures",
    "rollbacks",
    "active_devices",
)


@dataclass(frozen=True)
class ReleaseSpec:
    package_id: str
    version: str
    kind: str | None = None
    rollout_percent: float = 100.0
    rules: tuple[str, ...] = ()
    whitelist: Mapping[str, Any] | None = None
    mandatory: bool = False
    target_binary_range: str | None = None
    description: str | None = None
    starts_at: datetime | None = None
    halt_failure_rate: float = 0.2
    halt_min_reports: int = 50

    def validate(self) -> None:
        if self.kind is not None and self.kind not in KINDS:
            raise ValidationError(f"kind must be one of {', '.join(KINDS)}")
        percent_to_bp(self.rollout_percent)
        parse_rules(self.rules)
        check_whitelist(self.whitelist)
        if self.target_binary_range is not None:
            check_range(self.target_binary_range)
        if not 0 <= self.halt_failure_rate <= 1:
            raise ValidationError("halt_failure_rate must be between 0 and 1 (0 disables auto-halt)")
        if self.halt_min_reports < 1:
            raise ValidationError("halt_min_reports must be at least 1")
        if self.description is not None and len(self.description) > 4000:
            raise ValidationError("description is longer than 4000 characters")


@dataclass
class ReleaseView:
    """A release with what the API shows next to it."""

    release: Release
    channel: str
    package: Package | None
    counters: dict[str, int] = field(default_factory=dict)


def label_of(release: Release) -> str:
    return f"v{release.seq}"


def release_dict(view: ReleaseView, app_name: str, *, full: bool = False) -> dict[str, Any]:
    r, pkg, c = view.release, view.package, view.counters
    outcomes = c.get("installs", 0) + c.get("failures", 0)
    out: dict[str, Any] = {
        "id": r.id,
        "app": app_name,
        "channel": view.channel,
        "kind": r.kind,
        "package_id": r.package_id,
        "label": label_of(r),
        "version": pkg.version if pkg else None,
        "embedded": pkg is None,
        "package_hash": pkg.package_hash if pkg else None,
        "codepush_hash": pkg.codepush_hash if pkg else None,
        "size": pkg.archive_size if pkg else None,
        "target_binary_range": r.target_binary_range,
        "mandatory": r.mandatory,
        "description": r.description,
        "starts_at": r.starts_at,
        "rollout": r.rollout_bp / 100,
        "rules": r.rules,
        "whitelist": {k: len(v) for k, v in r.whitelist.items()},
        "status": r.status,
        "status_reason": r.status_reason,
        "rollback_of": r.rollback_of,
        "promoted_from": r.promoted_from,
        "auto_halt": {"failure_rate": r.halt_failure_rate, "min_reports": r.halt_min_reports},
        "counters": {k: c.get(k, 0) for k in COUNTER_FIELDS},
        "failure_rate": round(c.get("failures", 0) / outcomes, 4) if outcomes else None,
        "created_by": r.created_by,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
    }
    if full:
        out["whitelist"] = r.whitelist
    return out


def counter_dict(row: ReleaseCounter | None) -> dict[str, int]:
    return {k: int(getattr(row, k)) for k in COUNTER_FIELDS} if row is not None else {}
