"""Shared fixtures: settings on SQLite and PostgreSQL, a running app, tokens, and a moto S3 server.

PostgreSQL tests run when ``MPAAS_TEST_DATABASE_URL`` is set (``.ci/run`` sets it).
Each test gets a fresh database cloned from a migrated template, so tests are
isolated and migrations run once per worker.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pg_databases import PgDatabases

from mpaas.app import create_app
from mpaas.appkeys import DB
from mpaas.identity.audit import Actor
from mpaas.identity.tokens import create_token
from mpaas.settings import Settings
from tests_support import Server, cli_env, cli_in_process, free_port

#: Shared fixtures kept in tests/support (on the pythonpath), loaded for every test folder.
pytest_plugins = ["release_fixtures"]

PG_URL = os.environ.get("MPAAS_TEST_DATABASE_URL", "")
BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PgDatabases | None]:
    if not PG_URL:
        yield None
        return
    dbs = PgDatabases(PG_URL)
    yield dbs
    dbs.drop_all()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres" and not PG_URL:
        pytest.skip("MPAAS_TEST_DATABASE_URL is not set")
    return str(request.param)


@pytest.fixture
def make_settings(tmp_path: Path, backend: str, pg_databases: PgDatabases | None) -> Callable[..., Settings]:
    """Build Settings for this test's backend; keyword arguments override fields."""
    db_url: str | None = None

    def build(**overrides: Any) -> Settings:
        nonlocal db_url
        data_dir = tmp_path / "data"
        if db_url is None:
            if backend == "postgres":
                assert pg_databases is not None
                db_url = pg_databases.new(tmp_path / "tpl")
            else:
                db_url = f"sqlite:///{data_dir / 'mpaas.db'}"
        base: dict[str, Any] = {
            "data_dir": data_dir,
            "database_url": db_url,
            "auto_migrate": True,
            "log_json": False,
        }
        return Settings.from_env({}, base | overrides)

    return build


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> TestClient:  # type: ignore[type-arg]
    return await aiohttp_client(create_app(settings))


@pytest.fixture
def token_factory(client: TestClient) -> Callable[[str], Any]:  # type: ignore[type-arg]
    async def make(role: str) -> str:
        _row, secret = await create_token(client.app[DB], Actor("test"), name=f"t-{role}", role=role)
        return secret

    return make


@pytest.fixture
async def admin_headers(token_factory: Callable[[str], Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {await token_factory('admin')}"}


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto S3 server on a loopback port: a real HTTP endpoint, not patched calls."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(moto_server: str) -> str:
    import boto3

    name = f"mpaas-{secrets.token_hex(4)}"
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
async def stream() -> AsyncIterator[Callable[..., Any]]:
    """An async byte stream of the given chunks, optionally failing after ``fail_after`` chunks."""

    def make(chunks: list[bytes], fail_after: int | None = None) -> Any:
        async def gen() -> AsyncIterator[bytes]:
            for i, chunk in enumerate(chunks):
                if fail_after is not None and i == fail_after:
                    raise ConnectionResetError("client went away")
                yield chunk

        return gen()

    yield make


@pytest.fixture
def server_env(
    settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Server, dict[str, str]]]:
    """A running `mpaas server` subprocess on this test's database, an admin token, app `bank`.

    ``@pytest.mark.server_env(MPAAS_X="…")`` adds variables to the server's (and CLI's) environment.
    """
    env = cli_env(settings.data_dir, settings.database_url, tmp_path)
    marker = request.node.get_closest_marker("server_env")
    if marker is not None:
        env |= {str(k): str(v) for k, v in marker.kwargs.items()}
    token = cli_in_process(["init"], env).stdout.strip()
    server = Server(env)
    server.start()
    env |= {"MPAAS_SERVER": server.url, "MPAAS_TOKEN": token}
    cli_in_process(["apps", "create", "bank", "--platform", "android"], env)
    try:
        yield server, env
    finally:
        server.stop()
