"""Chaos: a transfer storm against a real `mpaas server` that is SIGKILLed again and again.

Holders are made in-process on the same SQLite database and data directory (so the
subprocess shares the app key, the master key and the sessions). Clients retry every
create with its idempotency key until they get an answer. The kills are decided by events
(the count of acknowledged answers), not by sleeps. Afterwards `mpaas ledger check` is
clean, every acknowledged transfer exists exactly once, and every balance is what the
acknowledged answers say.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import subprocess
import time
import urllib.request
from subprocess import DEVNULL
from typing import Any

import aiohttp
from sqlmodel import col, select

from mpaas.banking.client import GatewayClient
from mpaas.banking.ledger.models import LedgerTransfer
from tests_support import MPAAS, Server, cli, cli_env


class PatientServer(Server):
    """A server that may take up to a minute to come up on a loaded two-core machine."""

    def start(self) -> None:
        self.proc = subprocess.Popen([*MPAAS, "server"], env=self.env, stdout=DEVNULL, stderr=DEVNULL)
        deadline = time.monotonic() + 90
        while True:
            assert self.proc.poll() is None, "server exited"
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)


HOLDERS, PER_HOLDER, FUNDS = 5, 8, 100_000
KILL_AFTER = (8, 24)  # acknowledged answers before each SIGKILL (each restart costs ~3 s of CPU)


async def storm(server: Server, clients: list[GatewayClient], payees: list[str]) -> dict[str, dict[str, Any]]:
    acked: dict[str, dict[str, Any]] = {}
    progress = asyncio.Condition()

    async def send_all(client: GatewayClient, payee: str, h: int) -> None:
        for i in range(PER_HOLDER):
            key = f"chaos-{h}-{i:03d}"
            params = {"idempotency_key": key, "amount": 100 + i, "to": {"user_id": payee}}
            while True:
                try:
                    result = await client.call("com.bank.transfer.create", params)
                except (TimeoutError, aiohttp.ClientError):
                    await asyncio.sleep(0.05 + random.random() * 0.05)  # the server is down: retry
                    continue
                if result.code in (6666, 7000) or result.status >= 500:
                    await asyncio.sleep(0.05)
                    continue
                assert result.ok, (result.code, result.error)
                async with progress:
                    acked[key] = result.result
                    progress.notify_all()
                break

    async def killer() -> None:
        for threshold in KILL_AFTER:
            async with progress:
                await progress.wait_for(lambda: len(acked) >= threshold)  # noqa: B023
            server.kill9()
            await asyncio.to_thread(server.start)

    tasks = [
        asyncio.create_task(send_all(c, p, h)) for h, (c, p) in enumerate(zip(clients, payees, strict=True))
    ]
    chaos = asyncio.create_task(killer())
    await asyncio.gather(*tasks)
    await chaos
    return acked


async def test_sigkill_during_a_transfer_storm_loses_and_doubles_nothing(bank: Any, tmp_path: Any) -> None:
    holders = [await bank.holder(funds=FUNDS) for _ in range(HOLDERS)]
    settings = bank.env.settings
    env = cli_env(settings.data_dir, settings.database_url, tmp_path)
    server = PatientServer(env)
    await asyncio.to_thread(server.start)
    try:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            clients = [dataclasses.replace(h.client, http=http, base=server.url) for h in holders]
            payees = [holders[(i + 1) % HOLDERS].user_id for i in range(HOLDERS)]
            acked = await storm(server, clients, payees)
    finally:
        await asyncio.to_thread(server.stop)

    assert len(acked) == HOLDERS * PER_HOLDER
    check = await asyncio.to_thread(cli, ["ledger", "check"], env)
    assert check.stdout.startswith("ledger clean"), check.stdout
    ids = [r["transfer_id"] for r in acked.values()]
    async with bank.env.banking.sessions.db.session() as s:
        rows = (await s.exec(select(LedgerTransfer).where(col(LedgerTransfer.kind) == "internal"))).all()
    assert sorted(r.transfer_id for r in rows) == sorted(ids)  # each once, and nothing else
    assert all(r.status == "posted" for r in rows)
    sent = sum(100 + i for i in range(PER_HOLDER))
    for holder in holders:
        assert (await bank.balance(holder))["balance"] == FUNDS  # sent and received the same amounts
    assert sum(r.amount for r in rows) == HOLDERS * sent
