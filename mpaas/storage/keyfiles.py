"""Secret key files in the data directory's ``keys/``: made once, atomically, readable by owner only.

Several server processes may start at once on one data directory. Each writes a candidate
to a private temporary file and links it into place; ``link`` fails if the name exists,
so the first process's key wins and every process then reads that one.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def load_or_create_key(keys_dir: Path, name: str, size: int = 32) -> bytes:
    """The bytes of ``keys_dir/name``, made of ``size`` random bytes (mode 0600) if missing."""
    path = keys_dir / name
    if not path.exists():
        keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = keys_dir / f".{name}.{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(size))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic: the first process's key wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes()
