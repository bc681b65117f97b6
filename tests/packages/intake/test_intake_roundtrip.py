"""Property: a legitimate tree survives every format's intake byte for byte."""

from __future__ import annotations

import os
import tarfile
import tempfile
import unicodedata
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Union

from hypothesis import given, settings
from hypothesis import strategies as st

from mpaas.packages.intake.unpack import detect_format, unpack
from mpaas.packages.manifest import manifest_of_tree

Tree = dict[str, Union[bytes, "Tree"]]


def fold(name: str) -> str:
    """What intake calls "the same name" (NFC + casefold); generated names must differ by it."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


# Letters from many scripts, combining marks (so NFC and NFD spellings occur),
# digits, punctuation and spaces; never "/", "\\", ":", controls or surrogates.
name_chars = st.characters(blacklist_categories=("Cs", "Cc", "Co", "Cn"), blacklist_characters="/\\:")
component = st.text(name_chars, min_size=1, max_size=10).filter(lambda s: s not in (".", ".."))
content = st.one_of(st.binary(max_size=600), st.integers(0, 20_000).map(bytes))


def children(values: st.SearchStrategy[bytes | Tree]) -> st.SearchStrategy[Tree]:
    return st.lists(st.tuples(component, values), max_size=4, unique_by=lambda kv: fold(kv[0])).map(dict)


trees: st.SearchStrategy[Tree] = children(st.recursive(content, children, max_leaves=10))


def materialise(tree: Tree, root: Path) -> None:
    for name, value in tree.items():
        if isinstance(value, bytes):
            (root / name).write_bytes(value)
        else:
            (root / name).mkdir()
            materialise(value, root / name)


def walk(root: Path) -> list[tuple[str, bool]]:
    """Every (relative path, is_dir) below root, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            found.append((Path(dirpath, name).relative_to(root).as_posix(), True))
        for name in filenames:
            found.append((Path(dirpath, name).relative_to(root).as_posix(), False))
    return sorted(found)


def as_zip(method: int) -> Callable[[Path, Path], Path]:
    def pack(src: Path, out: Path) -> Path:
        target = out / "pkg.upload"
        with zipfile.ZipFile(target, "w", method) as zf:
            for rel, _ in walk(src):
                zf.write(src / rel, rel)  # directories become "rel/" entries
        return target

    return pack


def as_tar(*, gz: bool) -> Callable[[Path, Path], Path]:
    def pack(src: Path, out: Path) -> Path:
        target = out / "pkg.upload"
        with tarfile.open(target, "w:gz" if gz else "w") as tf:
            tf.add(src, arcname=".")  # members are "./", "./a", ... as `tar -C src .` writes them
        return target

    return pack


def as_dir(src: Path, out: Path) -> Path:
    return src


PACKERS: dict[str, Callable[[Path, Path], Path]] = {
    "dir": as_dir,
    "zip-stored": as_zip(zipfile.ZIP_STORED),
    "zip-deflated": as_zip(zipfile.ZIP_DEFLATED),
    "zip-bzip2": as_zip(zipfile.ZIP_BZIP2),
    "tar": as_tar(gz=False),
    "tar.gz": as_tar(gz=True),
}


@settings(max_examples=40, deadline=None)
@given(tree=trees)
def test_every_format_round_trips(tree: Tree) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        src = base / "src"
        src.mkdir()
        materialise(tree, src)
        expected = manifest_of_tree(src)
        for label, pack in PACKERS.items():
            work = base / label
            work.mkdir()
            source = pack(src, work)
            assert detect_format(source) == label.split("-")[0]
            dest = work / "dest"
            dest.mkdir()
            manifest = unpack(source, dest)
            assert manifest == expected, label
            assert manifest == manifest_of_tree(dest), label
            assert walk(dest) == walk(src), label
            for entry in manifest.files:
                assert (dest / entry.path).read_bytes() == (src / entry.path).read_bytes(), label
