"""Errors of the packages domain (intake, storage, releases).

Every class here also derives from :class:`PackageError`, so callers can catch the
whole domain at once while the HTTP status still comes from the
:mod:`mpaas.errors` base it pairs with (``BadRequest`` → 400, ...).
"""

from __future__ import annotations

from mpaas.errors import BadRequest, Conflict, MpaasError, NotFound, PayloadTooLarge, ValidationError

#: Longest entry name quoted in a message; the full name stays on ``.entry``.
_MAX_QUOTED_ENTRY = 200


def _quote_entry(entry: str) -> str:
    """repr() escapes control characters, so a hostile name cannot forge log lines."""
    if len(entry) > _MAX_QUOTED_ENTRY:
        return repr(entry[:_MAX_QUOTED_ENTRY]) + "…"
    return repr(entry)


class PackageError(MpaasError):
    """Base of the packages domain; defines no status, so a paired base decides it."""


class UnsupportedArchive(PackageError, BadRequest):
    """The upload is not a directory, zip, tar or tar.gz we can read."""

    code = "unsupported_archive"


class UnsafeArchive(PackageError, BadRequest):
    """An archive broke an intake rule; nothing from it may be committed.

    ``rule`` is one of the stable strings listed in :mod:`mpaas.packages.intake.unpack`;
    ``entry`` is the offending name as stored in the archive, or ``None`` when the
    rule concerns the archive as a whole (for example ``total_too_large``).
    """

    code = "unsafe_archive"

    def __init__(self, rule: str, *, entry: str | None = None, detail: str = "") -> None:
        subject = "archive" if entry is None else f"entry {_quote_entry(entry)}"
        message = f"{subject} rejected: {rule}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)
        self.rule = str(rule)
        self.entry = entry
        self.detail = detail


class InvalidPackageMeta(PackageError, ValidationError):
    """Publish metadata that does not fit the package's kind."""

    code = "invalid_package"


class PackageNotFound(PackageError, NotFound):
    code = "package_not_found"


class PackageVersionExists(PackageError, Conflict):
    """The same (app, kind, id, version) exists with different content."""

    code = "package_version_exists"


class UploadNotFound(PackageError, NotFound):
    code = "upload_not_found"


class UploadOffsetMismatch(PackageError, Conflict):
    code = "upload_offset_mismatch"


class UploadIncomplete(PackageError, Conflict):
    code = "upload_incomplete"


class UploadTooLarge(PackageError, PayloadTooLarge):
    code = "upload_too_large"
