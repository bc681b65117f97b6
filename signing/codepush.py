"""CodePush code signing: the ``.codepushrelease`` JWT that react-native-code-push checks.

What the device does (``CodePushUpdateUtils`` on Android and iOS) after unzipping an
update into its package folder:

1. hash the folder: sha256 of the JSON list of sorted ``"relative/path:sha256"`` strings,
   skipping ``__MACOSX/``, ``.DS_Store`` and ``.codepushrelease``, and require it to
   equal the ``package_hash`` the server announced;
2. read the JWT at ``<package>/CodePush/.codepushrelease``, verify it (RS256) with the
   public key built into the app, and require its ``contentHash`` claim to equal that
   same package hash.

Signing signs the hash it is handed: the caller computes that folder hash (the CLI uses
the packages domain's manifest, the hash mpaas announces) and passes it in.

The code-push CLI signs the ``CodePush`` folder that ``release-react`` zips, with the
hash computed relative to its parent, i.e. over the paths ``CodePush/...``. Here
``bundle_dir`` is that parent: the package root exactly as the device unpacks it.
Claims are ``claimVersion`` ("1.0.0"), ``contentHash`` and ``iat``, as the CLI's
``jsonwebtoken`` writes them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mpaas.signing.errors import CodePushSignatureError, KeyFileError
from mpaas.signing.keys import write_file_atomic
from mpaas.signing.tuf_root import utcnow

CLAIM_VERSION = "1.0.0"
CONTENT_DIR = "CodePush"
JWT_ALGORITHM = "RS256"
MIN_RSA_BITS = 2048
MAX_SIGNATURE_BYTES = 64 * 1024
#: The signature's file name; the device leaves it out of the folder hash.
SIGNATURE_FILE = ".codepushrelease"
_CONTENT_HASH = re.compile(r"[0-9a-f]{64}")


def signature_path(bundle_dir: Path) -> Path:
    """Where the device looks for the signature: ``<package>/CodePush/.codepushrelease``."""
    return bundle_dir / CONTENT_DIR / SIGNATURE_FILE


def generate_codepush_keypair(bits: int = MIN_RSA_BITS) -> tuple[bytes, bytes]:
    """(private PKCS#8 PEM, public SubjectPublicKeyInfo PEM); the public half goes into the app."""
    if bits < MIN_RSA_BITS:
        raise ValueError(f"RSA keys must have at least {MIN_RSA_BITS} bits")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def _private_key(pem: bytes) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"the CodePush signing key is not a usable PEM private key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_RSA_BITS:
        raise KeyFileError(f"CodePush signs with RS256: the key must be RSA with >= {MIN_RSA_BITS} bits")
    return key


def _public_key(pem: bytes) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"the CodePush public key is not a PEM public key: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyFileError("the CodePush public key must be RSA")
    return key


def _check_hash(content_hash: str) -> str:
    if not _CONTENT_HASH.fullmatch(content_hash):
        raise CodePushSignatureError("a CodePush package hash is 64 lowercase hex digits")
    return content_hash


def sign_bundle_dir(
    bundle_dir: Path, private_key_pem: bytes, content_hash: str, *, now: Callable[[], datetime] = utcnow
) -> str:
    """Sign a package root (which holds ``CodePush/``) and write its ``.codepushrelease``.

    ``content_hash`` is the folder hash of ``bundle_dir`` as the device computes it.
    Any previous signature is replaced; it is not part of the hash either way.
    Returns the JWT.
    """
    key = _private_key(private_key_pem)
    if not (bundle_dir / CONTENT_DIR).is_dir():
        raise CodePushSignatureError(
            f"{bundle_dir} has no {CONTENT_DIR}/ folder; the device only looks for "
            f"{CONTENT_DIR}/{SIGNATURE_FILE}"
        )
    claims = {
        "claimVersion": CLAIM_VERSION,
        "contentHash": _check_hash(content_hash),
        "iat": int(now().timestamp()),
    }
    token = jwt.encode(claims, key, algorithm=JWT_ALGORITHM)
    write_file_atomic(signature_path(bundle_dir), token.encode("ascii"), mode=0o644, overwrite=True)
    return token


def verify_bundle_dir(
    bundle_dir: Path, public_key_pem: bytes, content_hash: str, *, expected_hash: str | None = None
) -> dict[str, Any]:
    """Check a package root as the device does; return the verified claims.

    ``content_hash`` is the folder hash the device computes over ``bundle_dir``;
    ``expected_hash`` is the ``package_hash`` the server announced (without it the
    folder hash stands in for it).
    """
    key = _public_key(public_key_pem)
    path = signature_path(bundle_dir)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_SIGNATURE_BYTES + 1)
    except FileNotFoundError:
        raise CodePushSignatureError(
            "the update could not be verified because no signature was found"
        ) from None
    if len(raw) > MAX_SIGNATURE_BYTES:
        raise CodePushSignatureError("the signature file is too large")

    if expected_hash is not None and content_hash != expected_hash:
        raise CodePushSignatureError("the update contents failed the data integrity check")
    try:
        claims: dict[str, Any] = jwt.decode(
            raw.decode("ascii"),
            key,
            algorithms=[JWT_ALGORITHM],
            # The device checks the signature and contentHash only, not times or audience.
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False},
        )
    except (jwt.InvalidTokenError, UnicodeDecodeError):
        raise CodePushSignatureError(
            "the update could not be verified because it was not signed by a trusted party"
        ) from None
    signed = claims.get("contentHash")
    if not isinstance(signed, str):
        raise CodePushSignatureError("the update could not be verified: the signature has no content hash")
    if signed != content_hash:
        raise CodePushSignatureError("the update contents failed the code signing check")
    return claims
