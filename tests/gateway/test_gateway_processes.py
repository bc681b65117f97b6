"""Nonces and rate limits hold across two `mpaas server` processes that share Redis."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import pytest

from mpaas.banking.client import GatewayClient
from tests_support import Server, cli, cli_env, free_port


@pytest.fixture
def two_servers(tmp_path: Path, redis_url: str) -> Iterator[tuple[list[Server], dict[str, str]]]:
    env = cli_env(tmp_path / "data", f"sqlite:///{tmp_path / 'data' / 'mpaas.db'}", tmp_path)
    env |= {
        "MPAAS_REDIS_URL": redis_url,
        "MPAAS_REDIS_PREFIX": f"mpaas-test-{secrets.token_hex(6)}:",
        "MPAAS_GATEWAY_DEVICE_RATE": "4/h",
        "MPAAS_PUSH_WORKER": "false",
    }
    token = cli(["init"], env).stdout.strip()
    # Each its own free port: the next port up may be taken (CI failure of 2026-12-05: "server exited").
    servers = [Server(env), Server(env | {"MPAAS_PORT": str(free_port())})]
    try:
        with ThreadPoolExecutor(2) as pool:  # start both at once
            list(pool.map(Server.start, servers))
        admin = env | {"MPAAS_SERVER": servers[0].url, "MPAAS_TOKEN": token}
        cli(["apps", "create", "bank", "--platform", "android"], admin)
        yield servers, admin
    finally:
        for server in servers:
            server.stop()


async def test_rate_limits_and_nonces_hold_across_two_processes(
    two_servers: tuple[list[Server], dict[str, str]],
) -> None:
    servers, admin = two_servers
    key = json.loads(cli(["gateway", "keys", "create", "--app", "bank", "--json"], admin).stdout)
    async with aiohttp.ClientSession() as http:
        clients = [
            GatewayClient(
                http, "bank", base=s.url, app_kid=key["kid"], app_secret=base64.b64decode(key["secret"])
            )
            for s in servers
        ]
        clients[1].device = clients[0].device  # one device, its calls spread over both processes

        body = b"{}"
        headers = clients[0].headers("mpaas.session.start", 1, body)
        first = await clients[0].send(body, headers)
        replay = await clients[1].send(body, headers)  # the same signed request, to the other process
        assert (first.code, replay.code) == (1000, 4003)

        codes = [(await clients[i % 2].call("mpaas.session.start")).code for i in range(6)]
        # the device's bucket holds 4 tokens an hour for both processes together; one is spent
        assert codes == [1000, 1000, 1000, 1002, 1002, 1002]
        limited = await clients[1].call("mpaas.session.start")
        assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0
