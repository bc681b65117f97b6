"""The CLI's HTTP client for the admin API, as a release engineer's laptop uses it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aiohttp

from mpaas.cli.config import Target, load_target
from mpaas.cli.errors import CliError

T = TypeVar("T")
TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_read=300)


def run(coro: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await coro

    return asyncio.run(wrapper())


class ApiClient:
    def __init__(self, target: Target | None = None, *, require_token: bool = True) -> None:
        self.target = target or load_target()
        if require_token and not self.target.token:
            raise CliError("not logged in: run `mpaas login --server URL` or set MPAAS_TOKEN", exit_code=3)

    def headers(self) -> dict[str, str]:
        h = {"User-Agent": "mpaas-cli"}
        if self.target.token:
            h["Authorization"] = f"Bearer {self.target.token}"
        return h

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 202, 204),
    ) -> Any:
        url = self.target.server + path
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        all_headers = self.headers() | dict(headers or {})
        try:
            async with (
                aiohttp.ClientSession(timeout=TIMEOUT) as session,
                session.request(
                    method, url, json=json_body, params=query, data=data, headers=all_headers
                ) as resp,
            ):
                raw = await resp.read()
                if resp.status in ok:
                    if not raw:
                        return None
                    if resp.content_type == "application/json":
                        return json.loads(raw)
                    return raw
                raise self.error(resp.status, raw)
        except aiohttp.ClientConnectionError as exc:
            raise CliError(f"cannot reach the mpaas server at {self.target.server}: {exc}") from None
        except TimeoutError:
            raise CliError(f"the mpaas server at {self.target.server} did not answer in time") from None

    @staticmethod
    def error(status: int, raw: bytes) -> CliError:
        message = f"HTTP {status}"
        try:
            err = json.loads(raw)["error"]
            message = f"{err['message']} ({err['code']}, HTTP {status})"
        except (ValueError, KeyError, TypeError):
            if raw:
                message += ": " + raw[:200].decode(errors="replace")
        return CliError(message, exit_code=3 if status in (401, 403) else 1)

    def call(self, method: str, path: str, **kw: Any) -> Any:
        return run(self.request(method, path, **kw))


def with_client(fn: Callable[[ApiClient], T]) -> T:
    return fn(ApiClient())
