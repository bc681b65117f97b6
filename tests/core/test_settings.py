"""Settings from MPAAS_* variables: defaults, URL forms, bad values, masking."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mpaas.cli.main import cli
from mpaas.errors import ConfigError
from mpaas.settings import Settings, normalize_database_url


def test_defaults_are_embedded(tmp_path: Path) -> None:
    s = Settings.from_env({"MPAAS_DATA_DIR": str(tmp_path)})
    assert s.database_url == f"sqlite+aiosqlite:///{tmp_path.absolute()}/mpaas.db"
    assert s.blob_url == (tmp_path / "blobs").absolute().as_uri()
    assert s.is_sqlite and s.should_auto_migrate
    assert (s.host, s.port) == ("127.0.0.1", 8080)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h:5432/db", "postgresql+asyncpg://u@h:5432/db"),
        ("postgres://u:pw@h/db?sslmode=require", "postgresql+asyncpg://u:pw@h/db?sslmode=require"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:////var/x.db", "sqlite+aiosqlite:////var/x.db"),
    ],
)
def test_database_url_forms(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"MPAAS_PORT": "eighty"}, "MPAAS_PORT='eighty' is not an integer"),
        ({"MPAAS_PORT": "70000"}, "MPAAS_PORT='70000' must be between 0 and 65535"),
        ({"MPAAS_DATABASE_URL": "mysql://x/y"}, "scheme 'mysql' is not supported"),
        ({"MPAAS_DATABASE_URL": "postgresql://h:5432"}, "names no database"),
        ({"MPAAS_BLOB_URL": "ftp://x"}, "MPAAS_BLOB_URL scheme 'ftp'"),
        ({"MPAAS_BLOB_URL": "s3:///nobucket"}, "names no bucket"),
        ({"MPAAS_AUTO_MIGRATE": "maybe"}, "is not a boolean"),
        ({"MPAAS_LOG_LEVEL": "loud"}, "MPAAS_LOG_LEVEL"),
    ],
)
def test_bad_values_fail_with_one_line(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_postgres_does_not_auto_migrate_unless_asked() -> None:
    s = Settings.from_env({"MPAAS_DATABASE_URL": "postgresql://u@h/db"})
    assert not s.should_auto_migrate
    assert Settings.from_env(
        {"MPAAS_DATABASE_URL": "postgresql://u@h/db", "MPAAS_AUTO_MIGRATE": "1"}
    ).should_auto_migrate


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    env = {
        "MPAAS_DATA_DIR": str(tmp_path),
        "MPAAS_DATABASE_URL": "postgresql://app:hunter2@db:5432/mpaas",
        "MPAAS_METRICS_TOKEN": "topsecret",
    }
    result = CliRunner().invoke(cli, ["config", "show", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output and "topsecret" not in result.output
    assert "postgresql+asyncpg://app:***@db:5432/mpaas" in result.output


def test_cli_bad_setting_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["config", "show"], env={"MPAAS_PORT": "x"})
    assert result.exit_code == 2
    assert "Traceback" not in result.output
