"""Fixtures of the signing tests: a repository alone, and one behind a running mpaas app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from signing_support import APP, Mitm, Repo, Server, h5, make_repo_app

from mpaas.signing.keys import generate_app_keys, load_root_signers
from mpaas.signing.service_key import SIGNING
from mpaas.signing.tuf_repo import TufRepository
from mpaas.signing.tuf_store import InMemoryMetadataStore


@pytest.fixture
async def repo(tmp_path: Path, aiohttp_server: Callable[..., Any]) -> Repo:
    """A TUF repository over an in-memory store, served by a tiny HTTP server."""
    keys = generate_app_keys(APP, tmp_path / "offline" / "root.pem", tmp_path / "online" / APP)
    store = InMemoryMetadataStore()
    tuf = TufRepository(store)
    await tuf.init_repo(APP, keys.root_metadata, keys.online_signers.values())
    (root_signer,) = load_root_signers(keys.root_key_paths)  # the offline key, as a ceremony loads it
    state = Repo(store, tuf, keys, root_signer)
    server = await aiohttp_server(make_repo_app(state))
    state.base_url = str(server.make_url("")).rstrip("/")
    return state


@pytest.fixture
async def server(client: Any, admin_headers: dict[str, str], tmp_path: Path) -> Server:
    """The mpaas app with an app ``bank`` that has TUF keys."""
    resp = await client.post("/api/v1/apps", json={"name": APP, "platforms": ["ios"]}, headers=admin_headers)
    assert resp.status == 201
    root_key = tmp_path / "offline" / "root.pem"
    root = await client.app[SIGNING].init_app(APP, [root_key])
    return Server(client, admin_headers, client.app[SIGNING], root, root_key, tmp_path)


@pytest.fixture
async def released(server: Server) -> Server:
    """Version 1.0.0, then 2.0.0 with a delta from 1.0.0."""
    await server.publish(h5(1), "1.0.0")
    v2 = await server.publish(h5(1, changed=3), "2.0.0")
    assert [d["from_version"] for d in v2["deltas"]] == ["1.0.0"]
    return server


@pytest.fixture
async def mitm(released: Server, aiohttp_server: Callable[..., Any]) -> Mitm:
    """A man-in-the-middle proxy in front of the released app's TUF routes."""
    proxy = Mitm(released.base)
    app = web.Application()
    app.router.add_get("/{tail:.*}", proxy.handle)
    proxy.base = str((await aiohttp_server(app)).make_url(f"/tuf/{APP}")).rstrip("/")
    return proxy
