"""The wheel holds every subpackage and all package data of the namespace mapping."""

from __future__ import annotations

import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA_SUFFIXES = {".mako", ".html", ".css", ".js", ".svg", ".json", ".typed", ".txt"}


def mapped_dirs() -> dict[str, Path]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    pairs = [line.split("=") for line in cfg["options"]["package_dir"].strip().splitlines()]
    return {name.strip(): ROOT / folder.strip() for name, folder in pairs}


def expected_files() -> set[str]:
    """Every module and data file under the mapped folders, as wheel paths."""
    out: set[str] = set()
    for package, folder in mapped_dirs().items():
        prefix = package.replace(".", "/")
        for path in folder.rglob("*"):
            rel = path.relative_to(folder)
            if not path.is_file() or "__pycache__" in rel.parts:
                continue
            wheel_path = f"{prefix}/{rel.as_posix()}"
            if package == "mpaas" and rel.parts[0] in {p.split(".")[1] for p in mapped_dirs() if "." in p}:
                continue
            if path.suffix == ".py" or path.suffix in DATA_SUFFIXES or path.name == "py.typed":
                out.add(wheel_path)
    return out


def test_wheel_contains_every_module_and_data_file(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("mpaas-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = expected_files()
    assert "mpaas/storage/migrations/versions/0001_core.py" in expected
    assert "mpaas/py.typed" in expected
    missing = sorted(expected - names)
    assert not missing, f"missing from the wheel (list the package in setup.cfg?): {missing[:10]}"
    assert not any(n.startswith("tests/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mpaas = mpaas.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
