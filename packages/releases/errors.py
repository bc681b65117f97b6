"""Errors of releases and the update check."""

from __future__ import annotations

from mpaas.errors import BadRequest, Conflict, NotFound, Unauthorized
from mpaas.packages.errors import PackageError


class ReleaseNotFound(PackageError, NotFound):
    code = "release_not_found"


class ReleaseStateError(PackageError, Conflict):
    """The release is not in a state that allows the action (e.g. resuming a rolled-back one)."""

    code = "release_state"


class ReleaseConflict(PackageError, Conflict):
    """Two releases of the same lineage were created at once; the caller may retry."""

    code = "release_conflict"


class NothingToRollBack(PackageError, Conflict):
    code = "nothing_to_roll_back"


class InvalidDeploymentKey(PackageError, Unauthorized):
    code = "invalid_deployment_key"


class InvalidReport(PackageError, BadRequest):
    code = "invalid_report"
