"""The one error the delta code raises for a bad, corrupt or misapplied patch."""

from __future__ import annotations

from mpaas.errors import BadRequest
from mpaas.packages.errors import PackageError


class PatchError(PackageError, BadRequest):
    """A patch is malformed, corrupt, truncated, or does not fit the tree it is applied to."""

    code = "bad_patch"
