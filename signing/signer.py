"""The signing seam: anything with ``public_key`` and ``sign(payload) -> Signature``.

securesystemslib's ``CryptoSigner`` (local PEM key) satisfies :class:`Signer`, and so do
its KMS/HSM signers (``AWSSigner``, ``GCPSigner``, ...). Code that signs TUF metadata only
ever sees this protocol, so moving an online key into a KMS is a change of URI:

* ``file:/abs/path/timestamp.<keyid>.pem``, ``file:relative.pem`` or a plain path: a local
  PKCS#8 PEM key, loaded by :func:`load_online_signer` (the public key is derived).
* ``awskms:<key id or alias ARN>``: securesystemslib's ``AWSSigner`` (needs ``boto3`` and
  the public key, which the caller reads from the trusted root metadata). Any other
  scheme registered in ``securesystemslib.signer.SIGNER_FOR_URI_SCHEME`` works the same.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlparse
from urllib.request import url2pathname

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner, Key, Signature, SSlibKey
from securesystemslib.signer import Signer as SslibSigner

from mpaas.signing.errors import KeyFileError

logger = logging.getLogger(__name__)

FILE_SCHEME = "file"
MAX_KEY_FILE_BYTES = 64 * 1024


@runtime_checkable
class Signer(Protocol):
    """Structural twin of ``securesystemslib.signer.Signer`` (what we actually call)."""

    @property
    def public_key(self) -> Key: ...

    def sign(self, payload: bytes) -> Signature: ...


class SignerSource(Protocol):
    """Finds the online signer for a key id that an app's trusted root lists."""

    def get(self, app: str, keyid: str) -> Signer | None: ...


class KeyRing:
    """In-memory signers by (app, key id), in front of an optional slower source.

    A :class:`~mpaas.signing.tuf_repo.TufRepository` registers here the signers it is
    handed (at init or rotation); after a restart the ``fallback`` (for example
    :class:`mpaas.signing.keys.DirectoryKeyring`) finds them again by key id.
    """

    def __init__(self, fallback: SignerSource | None = None) -> None:
        self._signers: dict[tuple[str, str], Signer] = {}
        self._fallback = fallback

    def add(self, app: str, signer: Signer) -> None:
        self._signers[(app, signer.public_key.keyid)] = signer

    def get(self, app: str, keyid: str) -> Signer | None:
        signer = self._signers.get((app, keyid))
        if signer is None and self._fallback is not None:
            signer = self._fallback.get(app, keyid)
            if signer is not None:
                self._signers[(app, keyid)] = signer
        return signer


def _path_from_uri(uri: str) -> Path | None:
    """The local path a ``file:`` URI or bare path names; None for other schemes."""
    scheme, sep, _ = uri.partition(":")
    if not sep or len(scheme) == 1 or "/" in scheme:  # bare path (or a Windows drive letter)
        return Path(uri)
    if scheme.lower() != FILE_SCHEME:
        return None
    parsed = urlparse(uri)
    if parsed.netloc not in ("", "localhost"):
        raise KeyFileError(f"file: key URIs must name a local path, not host {parsed.netloc!r}")
    if not parsed.path:
        raise KeyFileError("file: key URI names no path")
    return Path(url2pathname(parsed.path))


def load_private_key_pem(
    path: Path, passphrase: bytes | None = None, public_key: Key | None = None
) -> CryptoSigner:
    """Load a PKCS#8 PEM ECDSA P-256 or Ed25519 private key as a ``CryptoSigner``.

    With ``public_key`` (as the root metadata lists it) the private key must match it,
    and signatures carry that key's id.
    """
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            logger.warning("private key file is readable by group or others", extra={"path": str(path)})
        with open(path, "rb") as fh:
            data = fh.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read private key {path}: {exc.strerror}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"private key file {path} is too large")
    try:
        private_key = load_pem_private_key(data, passphrase)
    except (ValueError, TypeError) as exc:
        # The message of these errors never contains key bytes; it says "bad password" etc.
        raise KeyFileError(f"cannot load private key {path}: {exc}") from None
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise KeyFileError(f"{path}: ECDSA keys must use P-256, not {private_key.curve.name}")
    elif not isinstance(private_key, ed25519.Ed25519PrivateKey):
        raise KeyFileError(f"{path}: only ECDSA P-256 and Ed25519 keys are supported")
    if public_key is None:
        return CryptoSigner(private_key)
    if not isinstance(public_key, SSlibKey):
        raise KeyFileError(f"{path}: unsupported public key type {type(public_key).__name__}")
    try:
        return CryptoSigner(private_key, public_key)
    except ValueError:  # includes KeyMismatchError
        raise KeyFileError(f"{path} does not hold the private half of key {public_key.keyid}") from None


def load_online_signer(
    uri: str | os.PathLike[str],
    public_key: Key | None = None,
    *,
    passphrase: bytes | None = None,
) -> Signer:
    """Load a signer from a key URI (``file:``, a plain path, or a KMS scheme).

    ``public_key`` is optional for local keys (it is derived, and checked against the
    private key when given) and required for KMS schemes such as ``awskms:``.
    """
    path = Path(uri) if isinstance(uri, os.PathLike) else _path_from_uri(uri)
    if path is not None:
        return load_private_key_pem(path, passphrase, public_key)
    if public_key is None:
        scheme = str(uri).partition(":")[0]
        raise KeyFileError(f"a {scheme}: signer needs its public key (read it from the root metadata)")
    try:
        return SslibSigner.from_priv_key_uri(str(uri), public_key)
    except ValueError as exc:
        raise KeyFileError(f"cannot load signer {uri}: {exc}") from None
