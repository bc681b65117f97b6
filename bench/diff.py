"""Delivery size, time and memory of an H5 update: full zip, changed-files zip,
whole-archive deltas over the uncompressed tar (HDiffPatch, bsdiff4, zstd with the
old tar as a ``--patch-from`` prefix) and mpaas's per-file patch.

    python bench/diff.py            # 5 MB / 500 files, plus the 5 → 50 MB growth table
    python bench/diff.py --quick    # small package, no growth table (CI smoke)

Every build and apply runs in a fresh spawned process, so its time and peak RSS
(VmHWM) are its own; "over base" subtracts the process's RSS just before
the work (interpreter plus imports). Each is run ``--repeat`` times (default 3):
the fastest time and the highest peak are shown, because shared machines are noisy. The goal from the issue: our patch ≤ 1.1 × the
best whole-archive delta. Packages come from the seeded generator in bench/h5gen.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import bsdiff4
import hdiffpatch
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))

import h5gen

from mpaas.packages.deltas.builder import apply_patch, build_patch
from mpaas.packages.manifest import manifest_of_tree

LEVEL = 19


# ---------------------------------------------------------------- work run in a child process


def _zip_tree(root: Path, out: Path, only: set[str] | None = None, deleted: list[str] | None = None) -> None:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            if only is None or rel in only:
                zf.write(path, rel)
        if deleted is not None:  # CodePush's diff-zip convention
            zf.writestr("hotcodepush.json", json.dumps({"deletedFiles": deleted}))


def build_full_zip(old: Path, new: Path, out: Path) -> None:
    _zip_tree(new, out)


def build_changed_zip(old: Path, new: Path, out: Path) -> None:
    before = {f.path: f.sha256 for f in manifest_of_tree(old).files}
    after = {f.path: f.sha256 for f in manifest_of_tree(new).files}
    changed = {p for p, sha in after.items() if before.get(p) != sha}
    _zip_tree(new, out, changed, sorted(set(before) - set(after)))


def _tar_of(root: Path) -> Path:
    return root.with_name(root.name + ".tar")


def _zstd_prefix_params(old_size: int, new_size: int) -> zstandard.ZstdCompressionParameters:
    window = min(31, max(20, (old_size + new_size).bit_length()))
    return zstandard.ZstdCompressionParameters.from_level(
        LEVEL, window_log=window, enable_ldm=True, source_size=new_size
    )


def _diff_whole(algorithm: str, a: bytes, b: bytes) -> bytes:
    if algorithm == "hdiff":
        return hdiffpatch.diff(a, b, hdiffpatch.ZStdConfig(level=LEVEL, window=23), validate=False)
    if algorithm == "bsdiff4":
        return bsdiff4.diff(a, b)
    prefix = zstandard.ZstdCompressionDict(a, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return zstandard.ZstdCompressor(
        dict_data=prefix, compression_params=_zstd_prefix_params(len(a), len(b))
    ).compress(b)


def _patch_whole(algorithm: str, a: bytes, delta: bytes) -> bytes:
    if algorithm == "hdiff":
        return hdiffpatch.apply(a, delta)
    if algorithm == "bsdiff4":
        return bsdiff4.patch(a, delta)
    prefix = zstandard.ZstdCompressionDict(a, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return zstandard.ZstdDecompressor(dict_data=prefix, max_window_size=1 << 31).decompress(delta)


def build_tar_delta(algorithm: str) -> Callable[[Path, Path, Path], None]:
    def build(old: Path, new: Path, out: Path) -> None:
        out.write_bytes(_diff_whole(algorithm, _tar_of(old).read_bytes(), _tar_of(new).read_bytes()))

    return build


def apply_tar_delta(algorithm: str, old: Path, patch: Path, dest: Path) -> None:
    dest.write_bytes(_patch_whole(algorithm, _tar_of(old).read_bytes(), patch.read_bytes()))


def build_ours(old: Path, new: Path, out: Path) -> None:
    # Includes hashing both trees, which the server skips (it has the manifests in its database).
    build_patch(old, manifest_of_tree(old), new, manifest_of_tree(new), out, level=LEVEL)


def apply_ours(old: Path, patch: Path, dest: Path) -> None:
    apply_patch(old, patch, dest)


def _maxrss_mib() -> float:
    """Peak RSS of this process image.

    VmHWM, because ``ru_maxrss`` survives execve(2) and would report the parent's
    size at fork time; ``ru_maxrss`` (KiB on Linux) where /proc is missing.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(task: str, *args: str) -> tuple[float, float, float]:
    """Run one task; return (seconds, peak RSS MiB, RSS MiB before the work)."""
    paths = [Path(a) for a in args[1:]]
    base = _maxrss_mib()
    start = time.perf_counter()
    if task == "build":
        BUILDERS[args[0]](*paths)
    elif args[0] == "ours":
        apply_ours(*paths)
    else:
        apply_tar_delta(args[0], *paths)
    return time.perf_counter() - start, _maxrss_mib(), base


BUILDERS: dict[str, Callable[[Path, Path, Path], None]] = {
    "full zip": build_full_zip,
    "changed-files zip": build_changed_zip,
    "hdiff": build_tar_delta("hdiff"),
    "bsdiff4": build_tar_delta("bsdiff4"),
    "zstd": build_tar_delta("zstd"),
    "ours": build_ours,
}
LABELS = {
    "full zip": "full zip (deflate -9)",
    "changed-files zip": "zip of changed files (+ deletion list)",
    "hdiff": "whole-tar delta: HDiffPatch (zstd-19)",
    "bsdiff4": "whole-tar delta: bsdiff4 (bz2)",
    "zstd": "whole-tar delta: zstd-19 --patch-from (prefix, long mode)",
    "ours": "**mpaas per-file patch (zstd-19)**",
}
WHOLE_ARCHIVE = ("hdiff", "bsdiff4", "zstd")


# ---------------------------------------------------------------- orchestration (parent process)


@dataclass
class Run:
    seconds: float
    peak_mib: float
    base_mib: float

    @property
    def over_base(self) -> float:
        return self.peak_mib - self.base_mib


def measure(pool: ProcessPoolExecutor, task: str, *args: object) -> Run:
    return Run(*pool.submit(_child, task, *map(str, args)).result())


def write_tar(root: Path) -> None:
    """Deterministic, uncompressed tar: sorted names, no times or owners."""
    with tarfile.open(_tar_of(root), "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.as_posix()):
            info = tarfile.TarInfo(path.relative_to(root).as_posix())
            info.size, info.mtime, info.mode = path.stat().st_size, 0, 0o644
            with open(path, "rb") as fh:
                tar.addfile(info, fh)


def prepare(work: Path, size: int, files: int, change: float, seed: int) -> tuple[Path, Path, int, int]:
    old_pkg = h5gen.generate(seed, size, files)
    new_pkg = h5gen.next_version(old_pkg, seed + 1, change)
    old, new = work / "old", work / "new"
    old_pkg.write(old)
    new_pkg.write(new)
    write_tar(old)
    write_tar(new)
    changed = sum(1 for p, b in new_pkg.files.items() if old_pkg.files.get(p) != b)
    return old, new, len(new_pkg.files), changed


def verify(algorithm: str, out: Path, new: Path) -> None:
    if algorithm == "ours":
        assert manifest_of_tree(out) == manifest_of_tree(new), "our patch did not reproduce the new tree"
    else:
        assert out.read_bytes() == _tar_of(new).read_bytes(), f"{algorithm} did not reproduce the new tar"


def best_of(runs: list[Run]) -> Run:
    """Fastest time (the least disturbed by other load) and the highest peak seen."""
    fastest = min(runs, key=lambda r: r.seconds)
    highest = max(runs, key=lambda r: r.peak_mib)
    return Run(fastest.seconds, highest.peak_mib, highest.base_mib)


def compare(
    pool: ProcessPoolExecutor, work: Path, forms: list[str], repeat: int
) -> dict[str, tuple[int, Run, Run | None]]:
    old, new = work / "old", work / "new"
    results: dict[str, tuple[int, Run, Run | None]] = {}
    for form in forms:
        out = work / f"{form.replace(' ', '_')}.out"
        builds, applies = [], []
        for _ in range(repeat):
            builds.append(measure(pool, "build", form, old, new, out))
            if form in (*WHOLE_ARCHIVE, "ours"):
                dest = work / f"{form}.applied"
                applies.append(measure(pool, "apply", form, old, out, dest))
                verify(form, dest, new)
                if dest.is_dir():
                    shutil.rmtree(dest)
                else:
                    dest.unlink()
        results[form] = (out.stat().st_size, best_of(builds), best_of(applies) if applies else None)
    return results


def fmt_run(run: Run | None) -> tuple[str, str]:
    if run is None:
        return "—", "—"
    return f"{run.seconds:.2f}", f"{run.peak_mib:.0f} (+{run.over_base:.0f})"


def print_comparison(results: dict[str, tuple[int, Run, Run | None]], size: int) -> float:
    whole = {k: v[0] for k, v in results.items() if k in WHOLE_ARCHIVE}
    best_form = min(whole, key=whole.__getitem__)
    best = whole[best_form]
    full = results["full zip"][0]
    print(
        "| delivery form | bytes | × best whole-archive delta | % of full zip | build s | build peak RSS MiB (+over base) | apply s | apply peak RSS MiB (+over base) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for form, (nbytes, build, applied) in results.items():
        bs, bm = fmt_run(build)
        as_, am = fmt_run(applied)
        print(
            f"| {LABELS[form]} | {nbytes:,} | {nbytes / best:.2f} | {100 * nbytes / full:.1f} % | {bs} | {bm} | {as_} | {am} |"
        )
    ours = results["ours"][0]
    ratio = ours / best
    print()
    print(f"- package: {size / 1e6:.1f} MB uncompressed; full zip {full:,} bytes")
    print(f"- best whole-archive delta: {LABELS[best_form]}, {best:,} bytes")
    print(
        f"- our patch / best whole-archive delta = **{ratio:.3f}** (goal ≤ 1.1: {'met' if ratio <= 1.1 else 'NOT met'})"
    )
    print(
        f"- our patch / full zip = {ours / full:.4f}; our patch / changed-files zip = {ours / results['changed-files zip'][0]:.3f}"
    )
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=float, default=5.0, help="package size in MiB (default 5)")
    parser.add_argument("--files", type=int, default=500, help="files in the package (default 500)")
    parser.add_argument("--change", type=float, default=0.03, help="share of files changed (default 0.03)")
    parser.add_argument("--scale-mb", type=float, default=50.0, help="size for the growth table; 0 skips it")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; best time is shown")
    parser.add_argument("--quick", action="store_true", help="1 MiB, 100 files, no growth table")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args(argv)
    if args.quick:
        args.size_mb, args.files, args.scale_mb, args.repeat = 1.0, 100, 0.0, 1

    print(f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}")
    print(
        f"libraries: hdiffpatch {_version('hdiffpatch')}, bsdiff4 {_version('bsdiff4')}, zstandard {zstandard.__version__}"
    )
    work = args.keep or Path(tempfile.mkdtemp(prefix="mpaas-bench-diff-"))
    work.mkdir(parents=True, exist_ok=True)
    ctx = get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx, max_tasks_per_child=1) as pool:
            small = work / "small"
            _, new, nfiles, changed = prepare(
                small, int(args.size_mb * 2**20), args.files, args.change, args.seed
            )
            size = sum(p.stat().st_size for p in new.rglob("*") if p.is_file())
            print(
                f"\n### {size / 1e6:.1f} MB, {nfiles} files, {changed} changed ({100 * changed / nfiles:.1f} %)\n"
            )
            results = compare(pool, small, list(BUILDERS), args.repeat)
            ratio = print_comparison(results, size)
            if args.scale_mb:
                growth(pool, work, args, small, results)
        return 0 if ratio <= 1.1 else 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def growth(
    pool: ProcessPoolExecutor,
    work: Path,
    args: argparse.Namespace,
    small: Path,
    small_results: dict[str, tuple[int, Run, Run | None]],
) -> None:
    """How our patch and the fastest whole-archive delta scale from the base size to --scale-mb."""
    factor = args.scale_mb / args.size_mb
    big = work / "big"
    prepare(big, int(args.scale_mb * 2**20), int(args.files * factor), args.change, args.seed)
    rows = []
    for label, root in (("base", small), ("scaled", big)):
        res = (
            {k: small_results[k] for k in ("ours", "hdiff")}
            if root is small
            else compare(pool, root, ["ours", "hdiff"], args.repeat)
        )
        size = sum(p.stat().st_size for p in (root / "new").rglob("*") if p.is_file())
        count = sum(1 for p in (root / "new").rglob("*") if p.is_file())
        rows.append((label, size, count, res))
    print(
        f"\n### Growth: {args.size_mb:g} MiB → {args.scale_mb:g} MiB (files × {factor:g}, {args.change:.0%} changed)\n"
    )
    print(
        "| package | form | patch bytes | build s | build peak RSS MiB (+over base) | apply s | apply peak RSS MiB (+over base) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for _, size, count, res in rows:
        for form, (nbytes, build, applied) in res.items():
            bs, bm = fmt_run(build)
            as_, am = fmt_run(applied)
            print(
                f"| {size / 1e6:.1f} MB / {count} files | {LABELS[form]} | {nbytes:,} | {bs} | {bm} | {as_} | {am} |"
            )
    (_, s0, _, r0), (_, s1, _, r1) = rows
    for form in ("ours", "hdiff"):
        b0, b1 = r0[form][1], r1[form][1]
        a0, a1 = r0[form][2], r1[form][2]
        assert a0 is not None and a1 is not None
        print(
            f"- {LABELS[form]}: ×{s1 / s0:.1f} size → build time ×{b1.seconds / b0.seconds:.1f}, "
            f"build memory over base ×{b1.over_base / max(b0.over_base, 1):.1f}; "
            f"apply time ×{a1.seconds / a0.seconds:.1f}, apply memory over base ×{a1.over_base / max(a0.over_base, 1):.1f}"
        )


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


if __name__ == "__main__":
    sys.exit(main())
