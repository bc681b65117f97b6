"""Deterministic zips of verified trees: the same files always give the same bytes.

The full-package download is built from the verified tree rather than kept as
uploaded, so that re-publishing identical content (re-zipped with new timestamps,
or uploaded once as a directory and once as a tar.gz) stores one archive.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from mpaas.packages.manifest import Manifest

EPOCH = (1980, 1, 1, 0, 0, 0)
STORE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".mp4", ".mp3", ".zip", ".gz", ".br", ".woff2")
COPY_CHUNK = 1 << 20


def write_zip(root: Path, manifest: Manifest, out: Path) -> None:
    """Zip every manifest file under ``root`` into ``out`` in manifest order."""
    with zipfile.ZipFile(out, "w", allowZip64=True) as zf:
        for entry in manifest.files:
            info = zipfile.ZipInfo(entry.path, date_time=EPOCH)
            info.external_attr = (0o100644 & 0xFFFF) << 16
            info.create_system = 3
            stored = entry.path.lower().endswith(STORE_SUFFIXES)
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            with (
                open(root / entry.path, "rb") as src,
                zf.open(info, "w", force_zip64=entry.size > 0x7FFFFFFF) as dst,
            ):
                while chunk := src.read(COPY_CHUNK):
                    dst.write(chunk)
