"""Key generation, key files and the signer seam."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import Metadata, Root

from mpaas.signing.errors import KeyFileError
from mpaas.signing.keys import (
    DirectoryKeyring,
    app_key_dir,
    generate_app_keys,
    generate_online_key,
    load_root_signers,
    online_key_path,
    write_secret_file,
)
from mpaas.signing.signer import KeyRing, Signer, load_online_signer
from mpaas.signing.tuf_root import check_root


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("key_type", "scheme"), [("ecdsa", "ecdsa-sha2-nistp256"), ("ed25519", "ed25519")])
def test_generate_app_keys(tmp_path: Path, key_type: str, scheme: str) -> None:
    online = tmp_path / "online" / "bank"
    keys = generate_app_keys("bank", tmp_path / "usb" / "root.pem", online, key_type=key_type)

    root = Metadata[Root].from_bytes(keys.root_metadata)
    check_root(None, root)  # self-signed to threshold, consistent snapshots
    assert root.signed.version == 1 and root.signed.consistent_snapshot
    assert {key.scheme for key in root.signed.keys.values()} == {scheme}
    for role, signer in keys.online_signers.items():
        assert root.signed.roles[role].keyids == [signer.public_key.keyid]
        path = keys.online_key_paths[role]
        assert path == online_key_path(online, role, signer.public_key.keyid)
        assert mode(path) == 0o600
    assert mode(keys.root_key_paths[0]) == 0o600
    # The server's online key directory never holds the root key.
    root_keyid = root.signed.roles["root"].keyids[0]
    assert not any(root_keyid in p.name for p in online.iterdir())
    assert not list(online.glob(".*.tmp"))


def test_umask_cannot_widen_key_files(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_secret_file(tmp_path / "k.pem", b"secret")
    finally:
        os.umask(old)
    assert mode(tmp_path / "k.pem") == 0o600


def test_existing_root_key_is_never_overwritten_and_nothing_is_left_behind(tmp_path: Path) -> None:
    (tmp_path / "root.pem").write_bytes(b"precious")
    with pytest.raises(KeyFileError, match="already exists"):
        generate_app_keys("bank", tmp_path / "root.pem", tmp_path / "online")
    assert (tmp_path / "root.pem").read_bytes() == b"precious"
    assert not (tmp_path / "online").exists() or not any((tmp_path / "online").iterdir())


def test_partial_failure_removes_written_keys(tmp_path: Path) -> None:
    (tmp_path / "online").write_bytes(b"a file where a directory must go")
    with pytest.raises(OSError):
        generate_app_keys("bank", tmp_path / "root.pem", tmp_path / "online")
    assert not (tmp_path / "root.pem").exists()


def test_root_threshold_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_app_keys("bank", tmp_path / "r.pem", tmp_path / "o", root_threshold=2)
    with pytest.raises(ValueError):
        generate_app_keys("../bank", tmp_path / "r.pem", tmp_path / "o")
    with pytest.raises(ValueError):
        generate_app_keys("bank", tmp_path / "r.pem", tmp_path / "o", key_type="rsa")


def test_encrypted_root_key(tmp_path: Path) -> None:
    keys = generate_app_keys("bank", tmp_path / "root.pem", tmp_path / "o", root_passphrase=b"correct horse")
    assert b"ENCRYPTED" in keys.root_key_paths[0].read_bytes()
    with pytest.raises(KeyFileError):
        load_root_signers(keys.root_key_paths)
    (signer,) = load_root_signers(keys.root_key_paths, b"correct horse")
    assert (
        signer.public_key.keyid in Metadata[Root].from_bytes(keys.root_metadata).signed.roles["root"].keyids
    )


def test_load_online_signer_uris(tmp_path: Path) -> None:
    signer = generate_online_key(tmp_path / "keys dir", "timestamp")
    path = online_key_path(tmp_path / "keys dir", "timestamp", signer.public_key.keyid)
    uris: list[str | Path] = [path, str(path), f"file:{path}", path.as_uri()]
    for uri in uris:
        loaded = load_online_signer(uri)
        assert isinstance(loaded, Signer)
        assert loaded.public_key.keyid == signer.public_key.keyid
        signature = loaded.sign(b"payload")
        signer.public_key.verify_signature(signature, b"payload")

    assert load_online_signer(path, signer.public_key).public_key == signer.public_key
    with pytest.raises(KeyFileError, match="private half"):
        load_online_signer(path, CryptoSigner.generate_ecdsa().public_key)
    with pytest.raises(KeyFileError):
        load_online_signer("file://elsewhere/key.pem")
    with pytest.raises(KeyFileError, match="cannot read"):
        load_online_signer(tmp_path / "missing.pem")


def test_kms_uris_need_the_public_key(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="needs its public key"):
        load_online_signer("awskms:alias/mpaas-timestamp")
    with pytest.raises(KeyFileError):
        load_online_signer("nosuchkms:abc", CryptoSigner.generate_ecdsa().public_key)


def test_rejects_unsupported_key_types(tmp_path: Path) -> None:
    rsa = CryptoSigner.generate_rsa(size=2048)
    (tmp_path / "rsa.pem").write_bytes(rsa.private_bytes)
    with pytest.raises(KeyFileError, match="only ECDSA P-256 and Ed25519"):
        load_online_signer(tmp_path / "rsa.pem")
    (tmp_path / "junk.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyFileError):
        load_online_signer(tmp_path / "junk.pem")


def test_directory_keyring_finds_keys_by_id(tmp_path: Path) -> None:
    signer = generate_online_key(app_key_dir(tmp_path, "bank"), "snapshot", "ed25519")
    keyring = KeyRing(DirectoryKeyring(tmp_path))
    found = keyring.get("bank", signer.public_key.keyid)
    assert found is not None and found.public_key == signer.public_key
    assert keyring.get("other", signer.public_key.keyid) is None
    assert keyring.get("bank", "0" * 64) is None
    assert DirectoryKeyring(tmp_path).get("bank", "../../etc/passwd") is None

    # A key file whose name lies about its key id is an error, not a silent substitute.
    impostor = CryptoSigner.generate_ecdsa()
    fake_id = "f" * 64
    online_key_path(app_key_dir(tmp_path, "bank"), "targets", fake_id).write_bytes(impostor.private_bytes)
    with pytest.raises(KeyFileError):
        DirectoryKeyring(tmp_path).get("bank", fake_id)


def test_keyring_prefers_registered_signers() -> None:
    signer = CryptoSigner.generate_ecdsa()
    keyring = KeyRing()
    keyring.add("bank", signer)
    assert keyring.get("bank", signer.public_key.keyid) is signer
    assert isinstance(signer.public_key, SSlibKey)
