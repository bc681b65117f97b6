"""build_patch / apply_patch: exact round trips, rename detection, and rejection of bad patches."""

from __future__ import annotations

import hashlib
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpaas.packages.deltas.builder import (
    MAX_DELTA_FILE,
    PatchError,
    apply_patch,
    build_patch,
    plan_ops,
    read_patch_header,
)
from mpaas.packages.deltas.codec import DELTA_CODECS, Codec
from mpaas.packages.deltas.format import PatchWriter
from mpaas.packages.deltas.header import Op, OpKind, PatchHeader, PatchStats
from mpaas.packages.deltas.renames import is_hash_token, rename_key, strip_content_hash
from mpaas.packages.manifest import Manifest, manifest_of_tree

Files = dict[str, bytes]


def write_tree(root: Path, files: Files) -> Manifest:
    root.mkdir(parents=True)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return manifest_of_tree(root)


def read_tree(root: Path) -> Files:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def text(rng: random.Random, size: int) -> bytes:
    words = [b"const", b"return", b"function", b"state", b"props", b"render", b"=>", b"{", b"}", b";"]
    return b" ".join(rng.choice(words) for _ in range(size // 5))[:size]


def edit(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        pos = rng.randint(0, len(buf))
        if rng.random() < 0.5 and buf:
            del buf[pos : pos + rng.randint(1, 20)]
        else:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 30))
    return bytes(buf)


def hashed_name(stem: str, data: bytes, ext: str) -> str:
    return f"{stem}.{hashlib.sha256(data).hexdigest()[:8]}.{ext}"


DIRS = ["", "js/", "css/", "img/a/"]


@st.composite
def versions(draw: st.DrawFn) -> tuple[Files, Files]:
    """An old tree and a new one made from it by adds, deletes, renames, edits, moves."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    old: Files = {}
    for i in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["js", "bin", "empty", "plain"]))
        data = {
            "js": text(rng, rng.randint(1, 6000)),
            "bin": rng.randbytes(rng.randint(1, 3000)),
            "empty": b"",
            "plain": text(rng, rng.randint(1, 400)),
        }[kind]
        directory = draw(st.sampled_from(DIRS))
        if kind in ("js", "bin"):
            old[directory + hashed_name(f"f{i}", data, "js" if kind == "js" else "png")] = data
        else:
            old[f"{directory}file{i}.txt"] = data
    new = dict(old)
    for path in sorted(old):
        action = draw(st.sampled_from(["keep", "keep", "edit", "rehash", "move", "delete", "duplicate"]))
        data = new[path]
        if action == "edit":
            new[path] = edit(rng, data)
        elif action == "rehash" and path.count(".") == 2:
            changed = edit(rng, data)
            directory, _, name = path.rpartition("/")
            stem, _, ext = name.split(".")
            del new[path]
            new[(directory + "/" if directory else "") + hashed_name(stem, changed, ext)] = changed
        elif action == "move":
            del new[path]
            new["moved/" + path.replace("/", "_")] = data
        elif action == "delete":
            del new[path]
        elif action == "duplicate":
            new["dup/" + path.replace("/", "_")] = data
    for i in range(draw(st.integers(0, 3))):
        new[f"{draw(st.sampled_from(DIRS))}added{i}.bin"] = rng.randbytes(rng.randint(0, 2000))
    return old, new


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pair=versions(),
    codecs=st.sampled_from([DELTA_CODECS, (Codec.ZSTD,), (Codec.HDIFF,), ()]),
    max_delta_file=st.sampled_from([MAX_DELTA_FILE, 1000]),
)
def test_apply_reproduces_new_tree(
    pair: tuple[Files, Files], codecs: tuple[Codec, ...], max_delta_file: int
) -> None:
    old_files, new_files = pair
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        old, new = write_tree(base / "old", old_files), write_tree(base / "new", new_files)
        info = build_patch(
            base / "old",
            old,
            base / "new",
            new,
            base / "p",
            level=3,
            codecs=codecs,
            max_delta_file=max_delta_file,
        )
        result = apply_patch(base / "old", base / "p", base / "out")
        assert result == new
        assert read_tree(base / "out") == new_files
        assert manifest_of_tree(base / "out") == new
        assert (info.from_hash, info.to_hash) == (old.package_hash, new.package_hash)
        assert info.size == (base / "p").stat().st_size
        assert info.sha256 == hashlib.sha256((base / "p").read_bytes()).hexdigest()
        assert read_tree(base / "old") == old_files  # the base is read, never written
        assert [p.name for p in base.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("name", "stripped"),
    [
        ("app.3f2a1c.js", "app.js"),
        ("chunk-vendors.8d7e6f5a.css", "chunk-vendors.css"),
        ("main-AB12CD34.js", "main.js"),
        ("index-BfGk2x9Q.js", "index.js"),
        ("index-B-fGk2x9.js", "index.js"),
        ("2.3f2a1c9b.chunk.js", "2.chunk.js"),
        ("main.3f2a1c9b.js.map", "main.js.map"),
        ("logo.5d5d9eef.svg", "logo.svg"),
        ("icon-settings.png", "icon-settings.png"),
        ("page-session117.js", "page-session117.js"),
        ("facade.js", "facade.js"),
        ("jquery-migrate.min.js", "jquery-migrate.min.js"),
        ("index.html", "index.html"),
        (".hidden", ".hidden"),
    ],
)
def test_strip_content_hash(name: str, stripped: str) -> None:
    assert strip_content_hash(name) == stripped


def test_hash_tokens() -> None:
    assert is_hash_token("3f2a1c") and is_hash_token("AB12CD34") and is_hash_token("BfGkxQaZ")
    assert not is_hash_token("abcdef") and not is_hash_token("settings") and not is_hash_token("3f2a1")
    assert rename_key("static/js/app.3f2a1c.js") == "static/js/app.js"


def test_plan_kinds_and_rename_delta(tmp_path: Path) -> None:
    rng = random.Random(7)
    app = text(rng, 50_000)
    app2 = edit(rng, app)
    logo = rng.randbytes(4000)
    old_files = {
        hashed_name("js/app", app, "js"): app,
        "img/logo.png": logo,
        "index.html": b"<html>v1</html>",
        "gone.txt": b"bye",
        "same.txt": b"same",
    }
    new_files = {
        hashed_name("js/app", app2, "js"): app2,
        "img/v2/logo.png": logo,
        "index.html": b"<html>v2</html>",
        "new.txt": b"hello",
        "same.txt": b"same",
    }
    old = write_tree(tmp_path / "old", old_files)
    new = write_tree(tmp_path / "new", new_files)
    kinds = {op.path: op.kind for op in plan_ops(old, new)}
    assert kinds == {
        hashed_name("js/app", app, "js"): OpKind.DELETE,
        hashed_name("js/app", app2, "js"): OpKind.RENAME,
        "img/logo.png": OpKind.DELETE,
        "img/v2/logo.png": OpKind.COPY,
        "index.html": OpKind.MODIFY,
        "gone.txt": OpKind.DELETE,
        "new.txt": OpKind.ADD,
    }
    info = build_patch(tmp_path / "old", old, tmp_path / "new", new, tmp_path / "p")
    header = read_patch_header(tmp_path / "p")
    rename = next(op for op in header.ops if op.kind is OpKind.RENAME)
    assert rename.base == hashed_name("js/app", app, "js")
    assert rename.codec in DELTA_CODECS and rename.length < 500 < rename.size
    assert next(op for op in header.ops if op.kind is OpKind.COPY).length == 0
    assert header.stats == info.stats
    assert (info.stats.renamed.files, info.stats.moved.files, info.stats.unchanged.files) == (1, 1, 1)
    assert (info.stats.added.files, info.stats.deleted.files, info.stats.modified.files) == (1, 3, 1)
    assert info.size < 1000  # the 4 KB logo and 50 KB app.js never travel whole


def test_unchanged_files_cost_nothing(tmp_path: Path) -> None:
    rng = random.Random(3)
    old_files = {f"img/{i}.png": rng.randbytes(2000) for i in range(300)}
    new_files = {**old_files, "img/0.png": edit(rng, old_files["img/0.png"])}
    old = write_tree(tmp_path / "old", old_files)
    new = write_tree(tmp_path / "new", new_files)
    info = build_patch(tmp_path / "old", old, tmp_path / "new", new, tmp_path / "p")
    assert len(read_patch_header(tmp_path / "p").ops) == 1
    assert info.stats.unchanged.files == 299
    assert info.size < 1000  # listing the 299 unchanged sha256s alone would take ~10 KB


@pytest.fixture
def made(tmp_path: Path) -> tuple[Path, Path, Files]:
    """(old root, patch, new files) for a patch with text deltas and a large raw file last."""
    rng = random.Random(11)
    old_files = {f"js/{i}.js": text(rng, 3000) for i in range(10)}
    new_files = {k: edit(rng, v) for k, v in old_files.items()}
    new_files["zz/big.bin"] = rng.randbytes(300_000)
    old = write_tree(tmp_path / "old", old_files)
    new = write_tree(tmp_path / "new", new_files)
    build_patch(tmp_path / "old", old, tmp_path / "new", new, tmp_path / "p")
    return tmp_path / "old", tmp_path / "p", new_files


def reject(old_root: Path, patch: Path, dest: Path) -> PatchError:
    with pytest.raises(PatchError) as caught:
        apply_patch(old_root, patch, dest)
    assert not dest.exists()
    return caught.value


@pytest.mark.parametrize("cut", [0, 5, 12, 40, 0.5, -1000, -1])
def test_truncated_patch_is_rejected(made: tuple[Path, Path, Files], cut: float) -> None:
    old_root, patch, _ = made
    raw = patch.read_bytes()
    patch.write_bytes(raw[: int(len(raw) * cut) if isinstance(cut, float) else cut])
    reject(old_root, patch, old_root.parent / "out")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_flipped_bit_is_rejected_or_harmless(made: tuple[Path, Path, Files], where: float, bit: int) -> None:
    old_root, patch, new_files = made
    raw = bytearray(patch.read_bytes())
    raw[int(where * len(raw))] ^= 1 << bit
    with tempfile.TemporaryDirectory() as tmp:
        bad, dest = Path(tmp) / "p", Path(tmp) / "out"
        bad.write_bytes(bytes(raw))
        try:
            apply_patch(old_root, bad, dest)
        except PatchError:
            assert not dest.exists()
        else:  # only a flip the checksums make irrelevant may pass, and then the result is exact
            assert read_tree(dest) == new_files


def test_trailing_garbage_is_rejected(made: tuple[Path, Path, Files]) -> None:
    old_root, patch, _ = made
    patch.write_bytes(patch.read_bytes() + b"\0garbage")
    reject(old_root, patch, old_root.parent / "out")


def test_wrong_base_is_rejected(made: tuple[Path, Path, Files]) -> None:
    old_root, patch, _ = made
    (old_root / "js" / "0.js").write_bytes(b"locally changed")
    assert reject(old_root, patch, old_root.parent / "out").code == "patch_base_mismatch"


def test_dest_must_be_empty_and_is_kept_empty_on_failure(made: tuple[Path, Path, Files]) -> None:
    old_root, patch, _ = made
    dest = old_root.parent / "out"
    (dest / "x").mkdir(parents=True)
    with pytest.raises(PatchError):
        apply_patch(old_root, patch, dest)
    (dest / "x").rmdir()
    patch.write_bytes(patch.read_bytes()[:-50])
    with pytest.raises(PatchError):
        apply_patch(old_root, patch, dest)
    assert dest.is_dir() and list(dest.iterdir()) == []


def forge(path: Path, old: Manifest, ops: list[Op], to_hash: str, payload: bytes = b"") -> None:
    header = PatchHeader(old.package_hash, to_hash, tuple(ops), PatchStats())
    with open(path, "wb") as fh:
        writer = PatchWriter(fh, header, level=3)
        writer.write(payload)
        writer.close()


@pytest.mark.parametrize("evil", ["../escape.txt", "/abs.txt", "a/../../b", "a//b", "c\\d", "e\nf"])
def test_unsafe_paths_are_rejected(tmp_path: Path, evil: str) -> None:
    old = write_tree(tmp_path / "old", {"a.txt": b"a"})
    data = b"pwned"
    op = Op(OpKind.ADD, evil, None, len(data), hashlib.sha256(data).hexdigest(), Codec.RAW, len(data))
    forge(tmp_path / "p", old, [op], "0" * 64, data)
    reject(tmp_path / "old", tmp_path / "p", tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_ops_that_do_not_fit_the_base_are_rejected(tmp_path: Path) -> None:
    old = write_tree(tmp_path / "old", {"a.txt": b"a", "b.txt": b"b"})
    sha_a = hashlib.sha256(b"a").hexdigest()
    cases = [
        [Op(OpKind.DELETE, "missing.txt")],
        [Op(OpKind.COPY, "c.txt", "missing.txt", 1, sha_a)],
        [Op(OpKind.COPY, "c.txt", "b.txt", 1, sha_a)],  # b.txt holds other bytes
        [Op(OpKind.DELETE, "a.txt"), Op(OpKind.DELETE, "a.txt")],
        [Op(OpKind.COPY, "a.txt/inner", "a.txt", 1, sha_a)],  # a.txt both file and directory
    ]
    for ops in cases:
        new_entries = {f.path: f for f in old.files}
        for op in ops:
            if op.kind is OpKind.DELETE:
                new_entries.pop(op.path, None)
            else:
                new_entries[op.path] = op.entry
        forge(tmp_path / "p", old, ops, Manifest(new_entries.values()).package_hash)
        reject(tmp_path / "old", tmp_path / "p", tmp_path / "out")


def test_header_promising_another_package_is_rejected(tmp_path: Path) -> None:
    old = write_tree(tmp_path / "old", {"a.txt": b"a"})
    forge(tmp_path / "p", old, [Op(OpKind.DELETE, "a.txt")], "1" * 64)
    reject(tmp_path / "old", tmp_path / "p", tmp_path / "out")


def test_not_a_patch(tmp_path: Path) -> None:
    write_tree(tmp_path / "old", {"a.txt": b"a"})
    (tmp_path / "p").write_bytes(b"PK\x03\x04 this is a zip")
    reject(tmp_path / "old", tmp_path / "p", tmp_path / "out")
    with pytest.raises(PatchError):
        read_patch_header(tmp_path / "p")
