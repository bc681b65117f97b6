"""The transfer benchmark's load generator: HTTP/1.1 keep-alive over asyncio streams.

The benchmark's clients share the machine's two cores with the server, PostgreSQL and
Redis, so what the client spends per call is taken from the server. aiohttp's client cost
about 0.46 ms of CPU a transfer (measured per process, 2026-12-05: a tenth of what a
transfer costs the machine in all); pgbench, the baseline, is a C client that spends about
0.13 ms a transaction. This client sends exactly what ``GatewayClient.call`` sends (the
same body, and the same headers from ``GatewayClient.headers``: HMAC signature, fresh
nonce, timestamp, session) on one keep-alive connection per worker, and reads the answer's
status, ``X-Mgs-Result-Code`` and JSON body, without a general HTTP client's machinery.
It understands only what the gateway answers: a ``Content-Length`` body.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from mpaas.banking.client import PATH, GatewayResult


class LeanConnection:
    """One keep-alive connection to ``host:port``; ``post`` one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    async def post(self, body: bytes, headers: Mapping[str, str], path: str = PATH) -> GatewayResult:
        reader, writer = await self._open()
        head = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        raw_head = await reader.readuntil(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        answer: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                answer[name.strip().lower()] = value.strip()
        if "content-length" not in answer:
            raise ValueError(f"the gateway answered without Content-Length: {lines[0]}")
        raw = await reader.readexactly(int(answer["content-length"]))
        if answer.get("connection", "").lower() == "close":
            await self.close()
        data: dict[str, Any] = json.loads(raw) if raw else {}
        code = int(answer.get("x-mgs-result-code", data.get("result_code", 0)))
        return GatewayResult(status, code, data.get("result"), data.get("error"), answer)

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
