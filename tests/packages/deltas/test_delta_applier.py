"""The reference client: atomic switch, and the installed version survives every failure."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from mpaas.packages.deltas.applier import (
    apply_update,
    current_version,
    install_full,
    prune_versions,
    rollback,
)
from mpaas.packages.deltas.builder import PatchError, build_patch
from mpaas.packages.manifest import Manifest, manifest_of_tree

Files = dict[str, bytes]


def write_tree(root: Path, files: Files) -> Manifest:
    root.mkdir(parents=True)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return manifest_of_tree(root)


def read_tree(root: Path) -> Files:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


class Device:
    """An app directory with v1 installed, plus the v2 and v3 trees a server would publish."""

    def __init__(self, tmp: Path) -> None:
        rng = random.Random(5)
        self.v1: Files = {f"js/{i}.js": rng.randbytes(50) * 40 for i in range(6)}
        self.v1["index.html"] = b"<html>1</html>"
        self.v2: Files = {**self.v1, "js/0.js": self.v1["js/0.js"] + b"edit", "index.html": b"<html>2</html>"}
        del self.v2["js/5.js"]
        # Sorted after every other path, so a cut inside it fails after other files were written.
        self.v2["zz/big.bin"] = rng.randbytes(200_000)
        self.v3: Files = {**self.v2, "index.html": b"<html>3</html>"}
        self.server = tmp / "server"
        self.m1 = write_tree(self.server / "v1", self.v1)
        self.m2 = write_tree(self.server / "v2", self.v2)
        self.m3 = write_tree(self.server / "v3", self.v3)
        self.root = tmp / "app"
        self.current = self.root / "current"
        install_full(self.server / "v1", self.current, expected=self.m1)

    def patch(self, old: str, new: str, name: str = "p") -> Path:
        out = self.server / name
        manifests = {"v1": self.m1, "v2": self.m2, "v3": self.m3}
        build_patch(self.server / old, manifests[old], self.server / new, manifests[new], out)
        return out

    def snapshot(self) -> tuple[str, list[str], Files]:
        """What must not change when an update fails: the link, the directory listing, v1's bytes."""
        listing = sorted(p.relative_to(self.root).as_posix() for p in self.root.iterdir())
        listing += sorted("versions/" + p.name for p in (self.root / "versions").iterdir())
        return os.readlink(self.current), listing, read_tree(self.current)


@pytest.fixture
def device(tmp_path: Path) -> Device:
    return Device(tmp_path)


def test_install_full_layout(device: Device) -> None:
    assert device.current.is_symlink()
    assert os.readlink(device.current) == f"versions/{device.m1.package_hash}"
    assert current_version(device.current) == device.m1.package_hash
    assert read_tree(device.current) == device.v1


def test_apply_update_switches_and_keeps_previous(device: Device) -> None:
    new_dir = apply_update(device.current, device.patch("v1", "v2"))
    assert new_dir == device.root / "versions" / device.m2.package_hash
    assert current_version(device.current) == device.m2.package_hash
    assert read_tree(device.current) == device.v2
    assert read_tree(device.root / "versions" / device.m1.package_hash) == device.v1
    assert sorted(p.name for p in device.root.iterdir()) == ["current", "versions"]
    assert not [p for p in (device.root / "versions").iterdir() if p.name.startswith(".")]

    apply_update(device.current, device.patch("v2", "v3"))
    assert read_tree(device.current) == device.v3
    removed = prune_versions(device.current, keep=1)
    assert [p.name for p in removed] == [device.m1.package_hash]
    rollback(device.current, device.m2.package_hash)
    assert read_tree(device.current) == device.v2


def corrupt_payload(patch: Path) -> None:
    raw = bytearray(patch.read_bytes())
    raw[len(raw) - 5000] ^= 0x40  # inside the last (big, raw) payload
    patch.write_bytes(bytes(raw))


def truncate(patch: Path) -> None:
    patch.write_bytes(patch.read_bytes()[:-3000])


def append_garbage(patch: Path) -> None:
    patch.write_bytes(patch.read_bytes() + b"junk")


@pytest.mark.parametrize("damage", [corrupt_payload, truncate, append_garbage])
def test_damaged_patch_leaves_installed_version_untouched(device: Device, damage: object) -> None:
    patch = device.patch("v1", "v2")
    damage(patch)  # type: ignore[operator]
    before = device.snapshot()
    with pytest.raises(PatchError):
        apply_update(device.current, patch)
    assert device.snapshot() == before


def test_patch_for_another_base_leaves_installed_version_untouched(device: Device) -> None:
    patch = device.patch("v2", "v3")
    before = device.snapshot()
    with pytest.raises(PatchError) as caught:
        apply_update(device.current, patch)
    assert caught.value.code == "patch_base_mismatch"
    assert device.snapshot() == before


def test_tampered_installed_files_block_the_update(device: Device) -> None:
    patch = device.patch("v1", "v2")
    (device.current / "js" / "1.js").write_bytes(b"modified on the device")
    before = device.snapshot()
    with pytest.raises(PatchError):
        apply_update(device.current, patch)
    assert device.snapshot() == before


def test_debris_of_a_crashed_update_is_swept(device: Device) -> None:
    """A power cut mid-apply leaves a half-built temp dir and maybe a temp link; the next update cleans up."""
    half = device.root / "versions" / ".tmp-crashed"
    (half / "js").mkdir(parents=True)
    (half / "js" / "0.js").write_bytes(b"half written")
    os.symlink("versions/.tmp-crashed", device.root / ".current-dead.tmp")
    apply_update(device.current, device.patch("v1", "v2"))
    assert read_tree(device.current) == device.v2
    assert sorted(p.name for p in device.root.iterdir()) == ["current", "versions"]
    assert sorted(p.name for p in (device.root / "versions").iterdir()) == sorted(
        [device.m1.package_hash, device.m2.package_hash]
    )


def test_stale_version_directory_is_replaced(device: Device) -> None:
    """A directory already named after the new hash but with other content is not trusted."""
    stale = device.root / "versions" / device.m2.package_hash
    stale.mkdir()
    (stale / "stale").write_bytes(b"an incomplete copy")
    apply_update(device.current, device.patch("v1", "v2"))
    assert read_tree(device.current) == device.v2


def test_apply_update_needs_the_symlink_layout(device: Device, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    write_tree(plain, device.v1)
    with pytest.raises(PatchError):
        apply_update(plain, device.patch("v1", "v2"))
    assert read_tree(plain) == device.v1


def test_install_full_rejects_unexpected_content(device: Device) -> None:
    before = device.snapshot()
    with pytest.raises(PatchError):
        install_full(device.server / "v2", device.current, expected=device.m3)
    assert device.snapshot() == before
