"""Key generation and key files: the per-app TUF key set and its on-disk layout.

Private keys are PKCS#8 PEM files created with mode 0600 (temp file + rename, so a
reader never sees half a key). The root key(s) go where the operator says (ideally
removable, offline media); the online keys (targets, snapshot, timestamp) live in the
app's online key directory as ``{role}.{keyid}.pem`` so that a rotated key never
overwrites the key it replaces.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    load_pem_private_key,
)
from securesystemslib.signer import CryptoSigner

from mpaas.signing.errors import KeyFileError
from mpaas.signing.signer import Signer, load_private_key_pem
from mpaas.signing.tuf_root import (
    DEFAULT_EXPIRIES,
    ONLINE_ROLES,
    ROOT,
    Expiries,
    build_root,
    check_root,
    sign_with,
    to_bytes,
    utcnow,
)

KeyType = Literal["ecdsa", "ed25519"]
KEY_TYPES: tuple[KeyType, ...] = ("ecdsa", "ed25519")

_APP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_KEYID = re.compile(r"[0-9a-f]{64}")


def generate_signer(key_type: KeyType = "ecdsa") -> CryptoSigner:
    """A fresh key: ECDSA P-256 (``ecdsa-sha2-nistp256``, the default) or Ed25519."""
    if key_type == "ecdsa":
        return CryptoSigner.generate_ecdsa()
    if key_type == "ed25519":
        return CryptoSigner.generate_ed25519()
    raise ValueError(f"key type must be one of {KEY_TYPES}, not {key_type!r}")


def write_file_atomic(path: Path, data: bytes, *, mode: int, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename), created with ``mode``.

    Without ``overwrite`` an existing file is an error, checked atomically (hard link).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise KeyFileError(f"{path} already exists; refusing to overwrite it") from None
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_secret_file(path: Path, data: bytes, *, overwrite: bool = False) -> None:
    """A private file: mode 0600 from its creation, never readable by anyone else."""
    write_file_atomic(path, data, mode=0o600, overwrite=overwrite)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def private_key_pem(signer: CryptoSigner, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM of a ``CryptoSigner``'s key, encrypted when a passphrase is given."""
    pem = signer.private_bytes
    if not passphrase:
        return pem
    key = load_pem_private_key(pem, None)
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(passphrase))


def write_private_key(
    path: Path, signer: CryptoSigner, *, passphrase: bytes | None = None, overwrite: bool = False
) -> None:
    write_secret_file(path, private_key_pem(signer, passphrase), overwrite=overwrite)


def check_app_name(app: str) -> str:
    if not _APP_NAME.fullmatch(app):
        raise ValueError(f"invalid app name {app!r}")
    return app


def app_key_dir(base_dir: Path, app: str) -> Path:
    """The online key directory of one app: ``{base_dir}/{app}``."""
    return base_dir / check_app_name(app)


def online_key_path(online_dir: Path, role: str, keyid: str) -> Path:
    if role not in ONLINE_ROLES:
        raise ValueError(f"{role!r} is not an online role")
    if not _KEYID.fullmatch(keyid):
        raise ValueError("key ids are 64 lowercase hex digits")
    return online_dir / f"{role}.{keyid}.pem"


def generate_online_key(online_dir: Path, role: str, key_type: KeyType = "ecdsa") -> CryptoSigner:
    """Create and store a new online key for ``role`` (e.g. before a rotation)."""
    signer = generate_signer(key_type)
    write_private_key(online_key_path(online_dir, role, signer.public_key.keyid), signer)
    return signer


def load_root_signers(paths: Sequence[Path], passphrase: bytes | None = None) -> list[Signer]:
    """Load root keys from (offline) key files, for a ceremony."""
    return [load_private_key_pem(path, passphrase) for path in paths]


@dataclass(frozen=True, slots=True)
class AppKeys:
    app: str
    root_metadata: bytes
    """The signed ``1.root.json``: what the server and every client start from."""
    root_key_paths: tuple[Path, ...]
    online_signers: dict[str, CryptoSigner]
    online_key_paths: dict[str, Path]


def generate_app_keys(
    app: str,
    root_key_path: Path | Sequence[Path],
    online_dir: Path,
    key_type: KeyType = "ecdsa",
    root_threshold: int = 1,
    expiries: Expiries = DEFAULT_EXPIRIES,
    *,
    root_passphrase: bytes | None = None,
    now: Callable[[], datetime] = utcnow,
) -> AppKeys:
    """Generate an app's root and online keys and sign its first root metadata.

    One root key is written per path in ``root_key_path``; ``root_threshold`` of them must
    sign every future root. Existing files are never overwritten, and nothing is left
    behind if any step fails.
    """
    check_app_name(app)
    root_paths = (root_key_path,) if isinstance(root_key_path, Path) else tuple(root_key_path)
    if not root_paths:
        raise ValueError("at least one root key path is needed")
    if len(set(root_paths)) != len(root_paths):
        raise ValueError("root key paths must be distinct")
    if not 1 <= root_threshold <= len(root_paths):
        raise ValueError(f"root threshold must be between 1 and {len(root_paths)} (the number of root keys)")

    root_signers = [generate_signer(key_type) for _ in root_paths]
    online_signers = {role: generate_signer(key_type) for role in ONLINE_ROLES}
    online_paths = {
        role: online_key_path(online_dir, role, signer.public_key.keyid)
        for role, signer in online_signers.items()
    }

    root_md = build_root(
        [s.public_key for s in root_signers],
        {role: [s.public_key] for role, s in online_signers.items()},
        expires=now() + expiries.for_role(ROOT),
        root_threshold=root_threshold,
    )
    sign_with(root_md, root_signers)
    check_root(None, root_md)

    written: list[Path] = []
    try:
        for path, signer in zip(root_paths, root_signers, strict=True):
            write_private_key(path, signer, passphrase=root_passphrase)
            written.append(path)
        for role, signer in online_signers.items():
            write_private_key(online_paths[role], signer)
            written.append(online_paths[role])
    except BaseException:
        for path in written:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        raise

    return AppKeys(
        app=app,
        root_metadata=to_bytes(root_md),
        root_key_paths=root_paths,
        online_signers=online_signers,
        online_key_paths=online_paths,
    )


class DirectoryKeyring:
    """A :class:`~mpaas.signing.signer.SignerSource` over ``{base_dir}/{app}/{role}.{keyid}.pem``."""

    def __init__(self, base_dir: Path) -> None:
        self._base_dir = base_dir

    def get(self, app: str, keyid: str) -> Signer | None:
        if not _KEYID.fullmatch(keyid):
            return None
        directory = app_key_dir(self._base_dir, app)
        for role in ONLINE_ROLES:
            path = online_key_path(directory, role, keyid)
            if path.exists():
                signer = load_private_key_pem(path)
                if signer.public_key.keyid != keyid:
                    raise KeyFileError(f"{path} holds key {signer.public_key.keyid}, not {keyid}")
                return signer
        return None
