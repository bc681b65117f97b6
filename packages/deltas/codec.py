"""Per-file binary delta codecs.

Chosen by measurement (docs/adr/0002-delta-format.md): zstd with the old file as a
raw-content dictionary (the library form of ``zstd --patch-from``) is smallest for
local edits, HDiffPatch for edits scattered through a large file (renamed
identifiers), and bsdiff4 never won while being the slowest, so it is not offered.
:func:`encode_best` runs the candidates and keeps the smallest; when no delta is
smaller than the file itself, the file travels whole (``raw``) and the patch's outer
zstd stream compresses it.

Both sides hold the old file, the new file and the delta of one entry in memory;
files larger than :data:`MAX_DELTA_FILE` are never delta-coded (see the ADR).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import hdiffpatch
import zstandard

from mpaas.packages.deltas.errors import PatchError

#: Largest old or new file that gets delta work; bigger ones are sent whole.
MAX_DELTA_FILE = 64 << 20

#: zstd's default decoder limit (2**27 = 128 MiB) covers old + new at MAX_DELTA_FILE.
MAX_WINDOW_LOG = 27


class Codec(StrEnum):
    RAW = "raw"
    """The new file itself, compressed only by the patch's outer stream."""
    ZSTD = "zstd"
    """zstd frame compressed with the old file as a raw-content dictionary (prefix)."""
    HDIFF = "hdiff"
    """HDiffPatch compressed diff (zstd inside)."""


DELTA_CODECS: tuple[Codec, ...] = (Codec.ZSTD, Codec.HDIFF)


def _window_log(old_size: int, new_size: int) -> int:
    return min(MAX_WINDOW_LOG, max(10, (old_size + new_size).bit_length()))


def _zstd_dict(old: bytes) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def encode(codec: Codec, old: bytes, new: bytes, *, level: int) -> bytes:
    """The delta that turns ``old`` into ``new`` with ``codec``."""
    if codec is Codec.ZSTD:
        params = zstandard.ZstdCompressionParameters.from_level(
            level, source_size=len(new), window_log=_window_log(len(old), len(new)), write_checksum=0
        )
        compressor = zstandard.ZstdCompressor(dict_data=_zstd_dict(old), compression_params=params)
        return compressor.compress(new)
    if codec is Codec.HDIFF:
        return hdiffpatch.diff(old, new, hdiffpatch.ZStdConfig(level=level), validate=False)
    raise ValueError(f"{codec} is not a delta codec")


def decode(codec: Codec, old: bytes, delta: bytes, expected_size: int) -> bytes:
    """Rebuild the new file; raises PatchError on a corrupt delta or a wrong size."""
    if expected_size > MAX_DELTA_FILE or len(old) > MAX_DELTA_FILE:
        raise PatchError("delta-coded file exceeds the delta size limit")
    try:
        if codec is Codec.ZSTD:
            if zstandard.frame_content_size(delta) != expected_size:
                raise PatchError("zstd delta declares the wrong size")
            decompressor = zstandard.ZstdDecompressor(
                dict_data=_zstd_dict(old), max_window_size=1 << MAX_WINDOW_LOG
            )
            out = decompressor.decompress(delta, max_output_size=expected_size)
        elif codec is Codec.HDIFF:
            out = hdiffpatch.apply(old, delta)
        else:
            raise PatchError(f"{codec} is not a delta codec")
    except (zstandard.ZstdError, hdiffpatch.HDiffPatchError) as exc:
        raise PatchError(f"corrupt {codec} delta: {exc}") from exc
    if len(out) != expected_size:
        raise PatchError("delta produced a file of the wrong size")
    return out


def encode_best(
    old: bytes, new: bytes, *, level: int, codecs: Sequence[Codec] = DELTA_CODECS
) -> tuple[Codec, bytes | None]:
    """The smallest delta among ``codecs``, or ``(RAW, None)`` if none beats ``new``.

    The winner is decoded again and compared with ``new``, so a codec bug is
    caught on the server rather than on a phone.
    """
    best: tuple[Codec, bytes | None] = (Codec.RAW, None)
    best_size = len(new)
    for codec in codecs:
        delta = encode(codec, old, new, level=level)
        if len(delta) < best_size:
            best, best_size = (codec, delta), len(delta)
    winner, payload = best
    if payload is not None and decode(winner, old, payload, len(new)) != new:
        raise RuntimeError(f"{winner} delta does not reproduce its input")
    return best
