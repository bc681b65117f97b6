"""Operator commands refuse to create a data directory outside `mpaas init`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from mpaas.cli.main import cli as mpaas_cli
from tests_support import MPAAS


def bare_env(tmp_path: Path) -> dict[str, str | None]:
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MPAAS_")}
    return unset | {"MPAAS_CONFIG_HOME": str(tmp_path / "cfg")}


def test_keys_in_the_wrong_directory_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in bare_env(tmp_path).items() if v is not None}
    env |= {k: v for k, v in os.environ.items() if not k.startswith("MPAAS_")}
    proc = subprocess.run(
        [*MPAAS, "keys", "list"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"error: no mpaas data directory at {tmp_path / '.mpaas'}")
    assert "--data-dir" in proc.stderr and "MPAAS_DATA_DIR" in proc.stderr and "mpaas init" in proc.stderr
    assert not (tmp_path / ".mpaas").exists()


@pytest.mark.parametrize("args", [["keys", "expo-cert", "--app", "a"], ["db", "upgrade"]])
def test_other_operator_commands_refuse_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(mpaas_cli, args, env=bare_env(tmp_path))
    assert result.exit_code == 2 and "no mpaas data directory at" in result.stderr
    assert not (tmp_path / ".mpaas").exists()


def test_keys_name_the_data_directory_they_use(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = bare_env(tmp_path) | {"MPAAS_DATA_DIR": str(data)}
    init = CliRunner().invoke(mpaas_cli, ["init"], env=env)
    assert init.exit_code == 0, init.stderr
    listing = CliRunner().invoke(mpaas_cli, ["keys", "list"], env=env)
    assert listing.exit_code == 0, listing.stderr
    assert f"data directory: {data}" in listing.stderr and listing.stdout.strip() == "(none)"
