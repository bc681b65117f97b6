"""Errors of the signing domain.

Each maps to an HTTP answer through :class:`mpaas.errors.MpaasError`; messages never
contain key material.
"""

from __future__ import annotations

from mpaas.errors import BadRequest, Conflict, MpaasError, NotFound


class SigningError(MpaasError):
    """A signing operation could not be completed (server-side fault)."""

    status = 500
    code = "signing_error"


class KeyFileError(SigningError):
    """A key file is missing, unreadable, of the wrong type, or would be overwritten."""

    code = "key_file_error"


class MissingSigner(SigningError):
    """No online signer is available for a key that the trusted root requires."""

    code = "missing_signer"


class VersionConflict(Conflict):
    """A metadata (app, role, version) already exists; another publisher won the race."""

    code = "metadata_version_conflict"


class RepositoryNotFound(NotFound):
    code = "tuf_repository_not_found"


class RepositoryExists(Conflict):
    code = "tuf_repository_exists"


class InvalidMetadata(BadRequest):
    """Metadata handed to us (a root from a key ceremony, say) fails a TUF rule."""

    code = "invalid_metadata"


class InvalidTarget(BadRequest):
    code = "invalid_target"


class TargetNotFound(NotFound):
    code = "target_not_found"


class InvalidCertificate(BadRequest):
    """An Expo code-signing certificate or key fails the checks the Expo client makes."""

    code = "invalid_certificate"


class CodePushSignatureError(BadRequest):
    """A CodePush bundle signature is missing, malformed or does not match the contents."""

    code = "codepush_signature_invalid"
