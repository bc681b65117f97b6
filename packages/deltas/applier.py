"""Reference for the iOS/Android SDKs: install a package and apply patches atomically.

On-device layout, all inside one app-private directory ``root``::

    root/current -> versions/<package hash>     the path the app loads from (a symlink)
    root/versions/<package hash>/...            one directory per installed version
    root/versions/.tmp-XXXX/                    a version being built (only during an update)

An update never touches the installed version:

1. sweep debris that a crash may have left (``versions/.tmp-*``, ``.current-*.tmp``);
2. build the new version into a fresh ``versions/.tmp-XXXX`` with
   :func:`~mpaas.packages.deltas.builder.apply_patch`, which checks the base's package hash,
   checks every file's size and sha256 against the new manifest, and fsyncs;
3. ``rename(2)`` the temp directory to ``versions/<new hash>`` (atomic: the name
   either does not exist or names a complete, verified tree);
4. create a symlink ``.current-<random>.tmp -> versions/<new hash>`` and ``rename(2)``
   it over ``current``; rename replaces the link atomically, so a reader (or a crash)
   sees either the old or the new target, never a missing or half-made one;
5. fsync ``root`` so the switch survives power loss.

Any failure before step 4 removes the temp directory and re-raises; ``current`` keeps
pointing at the old version. The previous version stays on disk (for rollback and for
a running WebView still reading it) until :func:`prune_versions` removes it.

Updates of one ``root`` must not run concurrently (the SDK serialises them, e.g. with
a lock file): step 1 would remove another update's temp directory.

Platform notes: Android (Linux) has rename(2) and symlinks as used here. On iOS,
``rename(2)`` also replaces symlinks atomically; an SDK that prefers to avoid symlinks
can keep the current hash in a small file replaced by rename(2) the same way.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

from mpaas.packages.deltas.builder import apply_patch
from mpaas.packages.deltas.errors import PatchError
from mpaas.packages.manifest import Manifest, manifest_of_tree

VERSIONS = "versions"
_TMP_PREFIX = ".tmp-"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sweep_debris(root: Path) -> None:
    """Remove what an interrupted update left behind; never a complete version."""
    versions = root / VERSIONS
    if versions.is_dir():
        for child in versions.iterdir():
            if child.name.startswith(_TMP_PREFIX):
                shutil.rmtree(child, ignore_errors=True)
    for child in root.iterdir():
        if child.name.startswith(".current-") and child.name.endswith(".tmp"):
            child.unlink(missing_ok=True)


def _layout(installed_dir: Path) -> tuple[Path, Path]:
    """(root, real directory of the installed version) for a ``current`` symlink."""
    if not installed_dir.is_symlink() or not installed_dir.resolve().is_dir():
        raise PatchError(f"{installed_dir} is not a version symlink made by install_full")
    return installed_dir.parent, installed_dir.resolve()


def _switch(installed_dir: Path, version_dir: Path) -> None:
    root = installed_dir.parent
    link = root / f".current-{uuid.uuid4().hex}.tmp"
    os.symlink(os.path.relpath(version_dir, root), link)
    try:
        os.replace(link, installed_dir)
    except BaseException:
        link.unlink(missing_ok=True)
        raise
    _fsync_dir(root)


def _publish(tmp: Path, manifest: Manifest) -> Path:
    """Rename a verified temp tree to its final name, or reuse an identical one."""
    final = tmp.parent / manifest.package_hash
    if final.exists():
        if final.is_dir() and manifest_of_tree(final).package_hash == manifest.package_hash:
            shutil.rmtree(tmp)
            return final
        if final.is_dir():
            shutil.rmtree(final)
        else:
            final.unlink()
    os.rename(tmp, final)
    _fsync_dir(tmp.parent)
    return final


def apply_update(installed_dir: Path, patch: Path) -> Path:
    """Apply ``patch`` to the version ``installed_dir`` points at and switch to the result.

    Returns the new version's directory. On any error (PatchError for a bad,
    corrupt or mismatched patch, OSError for the disk) the installed version and
    ``installed_dir`` are unchanged and no temp directory is left.
    """
    root, current = _layout(installed_dir)
    _sweep_debris(root)
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=root / VERSIONS))
    try:
        manifest = apply_patch(current, patch, tmp, fsync=True)
        final = _publish(tmp, manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _switch(installed_dir, final)
    return final


def install_full(tree: Path, installed_dir: Path, *, expected: Manifest | None = None) -> Path:
    """Install an unpacked full package and point ``installed_dir`` at it.

    ``expected`` (the manifest from signed metadata) is checked when given; the
    copy is verified either way by re-hashing it. ``installed_dir`` may not exist
    yet (first install) or be a symlink made by an earlier install.
    """
    root = installed_dir.parent
    if installed_dir.exists() and not installed_dir.is_symlink():
        raise PatchError(f"{installed_dir} exists and is not a version symlink")
    (root / VERSIONS).mkdir(parents=True, exist_ok=True)
    _sweep_debris(root)
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=root / VERSIONS))
    try:
        shutil.copytree(tree, tmp, dirs_exist_ok=True, symlinks=False)
        manifest = manifest_of_tree(tmp)
        if expected is not None and manifest.package_hash != expected.package_hash:
            raise PatchError("package does not match its manifest", code="package_mismatch")
        final = _publish(tmp, manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _switch(installed_dir, final)
    return final


def current_version(installed_dir: Path) -> str:
    """The package hash ``installed_dir`` points at."""
    return _layout(installed_dir)[1].name


def rollback(installed_dir: Path, package_hash: str) -> Path:
    """Point ``installed_dir`` back at a kept version (verified again first)."""
    root, _ = _layout(installed_dir)
    target = root / VERSIONS / package_hash
    if not target.is_dir() or manifest_of_tree(target).package_hash != package_hash:
        raise PatchError(f"version {package_hash[:12]} is not installed intact", code="version_missing")
    _switch(installed_dir, target)
    return target


def prune_versions(installed_dir: Path, *, keep: int = 1) -> list[Path]:
    """Delete all versions but the current one and the ``keep`` most recently installed others."""
    root, current = _layout(installed_dir)
    others = sorted(
        (
            p
            for p in (root / VERSIONS).iterdir()
            if p.is_dir() and p != current and not p.name.startswith(".")
        ),
        key=lambda p: p.stat().st_mtime_ns,
        reverse=True,
    )
    removed = others[keep:]
    for path in removed:
        shutil.rmtree(path)
    return removed
