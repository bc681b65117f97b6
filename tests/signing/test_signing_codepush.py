"""CodePush .codepushrelease signing, checked the way the device checks it."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from signing_support import device_hash

from mpaas.packages.manifest import manifest_of_tree
from mpaas.signing.codepush import (
    CLAIM_VERSION,
    generate_codepush_keypair,
    sign_bundle_dir,
    signature_path,
    verify_bundle_dir,
)
from mpaas.signing.errors import CodePushSignatureError, KeyFileError


@pytest.fixture(scope="module")
def keypair() -> tuple[bytes, bytes]:
    return generate_codepush_keypair()


def make_bundle(root: Path) -> Path:
    (root / "CodePush" / "assets" / "img").mkdir(parents=True)
    (root / "CodePush" / "index.android.bundle").write_bytes(b"console.log('hi')")
    (root / "CodePush" / "assets" / "img" / "logo.png").write_bytes(b"\x89PNG")
    (root / "CodePush" / ".DS_Store").write_bytes(b"finder junk")
    return root


def test_signed_bundle_verifies_and_carries_the_package_hash(
    tmp_path: Path, keypair: tuple[bytes, bytes]
) -> None:
    private_pem, public_pem = keypair
    bundle = make_bundle(tmp_path)
    token = sign_bundle_dir(bundle, private_pem, device_hash(bundle))

    assert signature_path(bundle).read_text() == token
    claims = jwt.decode(token, public_pem, algorithms=["RS256"])
    assert claims["claimVersion"] == CLAIM_VERSION
    # The hash the CLI hands in (the packages manifest's) is the one the device computes.
    assert claims["contentHash"] == device_hash(bundle) == manifest_of_tree(bundle).codepush_hash
    assert isinstance(claims["iat"], int)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"

    assert verify_bundle_dir(bundle, public_pem, device_hash(bundle)) == claims
    assert (
        verify_bundle_dir(bundle, public_pem, device_hash(bundle), expected_hash=claims["contentHash"])
        == claims
    )
    # Re-signing replaces the signature and, since it is outside the hash, keeps the hash.
    assert (
        jwt.decode(
            sign_bundle_dir(bundle, private_pem, device_hash(bundle)), public_pem, algorithms=["RS256"]
        )["contentHash"]
        == (claims["contentHash"])
    )


def test_device_checks_refuse(tmp_path: Path, keypair: tuple[bytes, bytes]) -> None:
    private_pem, public_pem = keypair
    bundle = make_bundle(tmp_path)
    good_hash = device_hash(bundle)
    sign_bundle_dir(bundle, private_pem, good_hash)

    with pytest.raises(CodePushSignatureError, match="data integrity"):
        verify_bundle_dir(bundle, public_pem, good_hash, expected_hash="0" * 64)
    _, other_public = generate_codepush_keypair()
    with pytest.raises(CodePushSignatureError, match="trusted party"):
        verify_bundle_dir(bundle, other_public, good_hash)

    (bundle / "CodePush" / "index.android.bundle").write_bytes(b"console.log('pwned')")
    with pytest.raises(CodePushSignatureError, match="code signing check"):
        verify_bundle_dir(bundle, public_pem, device_hash(bundle))
    with pytest.raises(CodePushSignatureError, match="data integrity"):
        verify_bundle_dir(bundle, public_pem, device_hash(bundle), expected_hash=good_hash)

    signature_path(bundle).unlink()
    with pytest.raises(CodePushSignatureError, match="no signature"):
        verify_bundle_dir(bundle, public_pem, good_hash)


def test_signing_requirements(tmp_path: Path, keypair: tuple[bytes, bytes]) -> None:
    private_pem, public_pem = keypair
    with pytest.raises(CodePushSignatureError, match="CodePush/"):
        sign_bundle_dir(tmp_path, private_pem, "0" * 64)
    make_bundle(tmp_path)
    with pytest.raises(KeyFileError):
        sign_bundle_dir(tmp_path, public_pem, device_hash(tmp_path))
    for bad in ("", "0" * 63, "A" * 64, device_hash(tmp_path) + "\n"):
        with pytest.raises(CodePushSignatureError, match="64 lowercase hex"):
            sign_bundle_dir(tmp_path, private_pem, bad)
    assert not signature_path(tmp_path).exists()
    with pytest.raises(ValueError):
        generate_codepush_keypair(1024)
