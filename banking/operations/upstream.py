"""Operations served by the bank's own back-end services over HTTP, declared at run time.

The gateway validates the input against the operation's schema, then POSTs it as JSON to
the operation's URL with who is calling in signed headers::

    X-Mpaas-Operation, X-Mpaas-Version, X-Mpaas-App, X-Mpaas-Device, X-Mpaas-User,
    X-Mpaas-Tier, X-Mpaas-Call-Id, X-Mpaas-Timestamp, X-Mpaas-Signature

``X-Mpaas-Signature`` is the lowercase hex HMAC-SHA256, keyed with the operation's
upstream secret (shown when the operation is added), of these lines joined by LF:
``MPAAS-UPSTREAM-1``, the eight header values above in that order (an empty line for
no user), and the hex sha256 of the body. ``X-Mpaas-Call-Id`` is the same for every
retry of one call, so the service can drop duplicates.

Each attempt has a timeout; only idempotent operations are retried (on a connection
error, a timeout, or 502/503/504). Failed calls count towards the operation's circuit
breaker; while it is open, calls are answered 7000 without reaching the service. A 2xx
JSON object is the result; 400/409/422 become 4001 with the service's
``error.message`` (written by the bank for its users); other answers become 7000.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from pydantic import BaseModel

from mpaas.banking.models import BankOperation
from mpaas.banking.operations.breaker import CLOSED, CircuitBreaker
from mpaas.banking.operations.declare import parse_rate
from mpaas.banking.operations.schema import model_from_schema
from mpaas.banking.users.tiers import level_of
from mpaas.gateway.codes import GatewayError, ResultCode
from mpaas.gateway.keys import MasterKey
from mpaas.gateway.operation import Call, OperationSpec

log = logging.getLogger("mpaas.banking.upstream")
MAX_ANSWER = 1 << 20
RETRY_STATUSES = (502, 503, 504)


class UpstreamFailure(Exception):
    """An attempt that failed in a way a retry may fix."""


class Upstreams:
    """Builds upstream operation specs and forwards their calls; one per process."""

    def __init__(
        self,
        master: MasterKey,
        *,
        timeout: float,
        retries: int,
        breaker_failures: int,
        breaker_reset: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.master, self.timeout, self.retries = master, timeout, retries
        self.breaker_failures, self.breaker_reset, self.clock = breaker_failures, breaker_reset, clock
        self.breakers: dict[tuple[str, int], CircuitBreaker] = {}
        self._http: aiohttp.ClientSession | None = None

    def secret(self, name: str) -> bytes:
        return self.master.derive("upstream", name)

    def breaker(self, name: str, version: int) -> CircuitBreaker:
        key = (name, version)
        found = self.breakers.get(key)
        if found is None:
            found = self.breakers[key] = CircuitBreaker(
                self.breaker_failures, self.breaker_reset, lambda: self.clock()
            )
        return found

    def spec(self, row: BankOperation) -> OperationSpec:
        model = model_from_schema(row.name.replace(".", "_") + f"_v{row.version}", row.input_schema)
        url, idempotent = str(row.url), row.idempotent
        timeout = row.timeout_seconds or self.timeout
        name, version = row.name, row.version

        async def forward(call: Call, params: BaseModel) -> dict[str, Any]:
            return await self.forward(name, version, url, idempotent, timeout, call, params)

        return OperationSpec(
            name=row.name,
            version=row.version,
            input=model,
            handler=forward,
            min_level=level_of(row.min_tier),
            min_tier=row.min_tier,
            session_required=row.session_required,
            rate=parse_rate(row.rate),
            idempotent=row.idempotent,
            kind="upstream",
            summary=row.summary,
            enabled=row.enabled,
        )

    def headers(self, name: str, version: int, call: Call, body: bytes) -> dict[str, str]:
        who = call.principal
        values = {
            "X-Mpaas-Operation": name,
            "X-Mpaas-Version": str(version),
            "X-Mpaas-App": call.app,
            "X-Mpaas-Device": call.device,
            "X-Mpaas-User": (who.user_id or "") if who else "",
            "X-Mpaas-Tier": who.tier if who else "visitor",
            "X-Mpaas-Call-Id": hashlib.sha256(f"{call.app}|{call.device}|{call.nonce}".encode()).hexdigest()[
                :32
            ],
            "X-Mpaas-Timestamp": str(int(self.clock() * 1000)),
        }
        message = "\n".join(["MPAAS-UPSTREAM-1", *values.values(), hashlib.sha256(body).hexdigest()])
        signature = hmac.new(self.secret(name), message.encode(), hashlib.sha256).hexdigest()
        return values | {"X-Mpaas-Signature": signature, "Content-Type": "application/json"}

    async def forward(
        self,
        name: str,
        version: int,
        url: str,
        idempotent: bool,
        timeout: float,
        call: Call,
        params: BaseModel,
    ) -> dict[str, Any]:
        breaker = self.breaker(name, version)
        body = params.model_dump_json(exclude_none=True).encode()
        attempts = 1 + (self.retries if idempotent else 0)
        for attempt in range(attempts):
            if not breaker.allow():
                raise GatewayError(ResultCode.UPSTREAM_UNAVAILABLE, retry_after=self.breaker_reset)
            try:
                result = await self._attempt(url, self.headers(name, version, call, body), body, timeout)
            except UpstreamFailure as exc:
                log.warning("upstream attempt failed", extra={"operation": name, "reason": str(exc)})
                if attempt + 1 < attempts and breaker.state == CLOSED:
                    await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
                    continue
                breaker.failure()
                raise GatewayError(ResultCode.UPSTREAM_UNAVAILABLE) from None
            except GatewayError:
                breaker.success()  # the service answered; the caller's request was refused
                raise
            breaker.success()
            return result
        raise GatewayError(ResultCode.UPSTREAM_UNAVAILABLE)

    async def _attempt(
        self, url: str, headers: dict[str, str], body: bytes, timeout: float
    ) -> dict[str, Any]:
        http = self._session()
        try:
            async with http.post(
                url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                raw, status = await _bounded(resp), resp.status
        except TimeoutError:
            raise UpstreamFailure("timeout") from None
        except aiohttp.ClientError as exc:
            raise UpstreamFailure(type(exc).__name__) from None
        if status in RETRY_STATUSES or status >= 500:
            raise UpstreamFailure(f"status {status}")
        if raw is None:
            log.warning("upstream answer too large", extra={"url": url})
            raise GatewayError(ResultCode.UPSTREAM_UNAVAILABLE)
        data = _json(raw)
        if 200 <= status < 300 and isinstance(data, dict):
            return data
        if status in (400, 409, 422):
            message = None
            if isinstance(data, dict) and isinstance(data.get("error"), dict):
                found = data["error"].get("message")
                message = found[:200] if isinstance(found, str) else None
            raise GatewayError(ResultCode.INVALID_PARAMETERS, message)
        if status in (401, 403):
            raise GatewayError(ResultCode.ACCESS_DENIED)
        raise GatewayError(ResultCode.UPSTREAM_UNAVAILABLE)

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256), raise_for_status=False
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


async def _bounded(resp: aiohttp.ClientResponse) -> bytes | None:
    """The whole answer, or None past :data:`MAX_ANSWER` bytes (not read further)."""
    chunks, size = [], 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > MAX_ANSWER:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
