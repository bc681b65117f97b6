"""Requests aiohttp refuses before routing get the JSON error shape, and no request bytes in the log."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mpaas.app import create_app
from mpaas.settings import Settings
from mpaas.web.protocol import start
from tests_support import MPAAS, assert_error, cli, cli_env, free_port

SECRET = "mpaas_" + "S3cr3t" * 3000  # past aiohttp's 8190-byte header line limit


@pytest.fixture
async def port(settings: Settings) -> AsyncIterator[int]:
    """The app behind the server's own runner (mpaas.web.protocol), on a free port."""
    chosen = free_port()
    runner = await start(create_app(settings), "127.0.0.1", chosen)
    try:
        yield chosen
    finally:
        await runner.cleanup()


async def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; the status, headers (lower-case names) and body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), {k.lower(): v for k, v in headers.items()}, body


async def test_an_over_long_header_is_a_json_400_without_the_token(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    request = f"GET /api/v1/apps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\r\n\r\n".encode()
    with caplog.at_level(logging.DEBUG):
        status, headers, body = await exchange(port, request)
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    assert_error(json.loads(body), "header_too_large")
    assert b"S3cr3t" not in body
    assert "S3cr3t" not in caplog.text
    refused = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert refused and all(r.levelno == logging.WARNING and r.exc_info is None for r in refused)


@pytest.mark.parametrize(
    ("request_bytes", "code"),
    [
        (b"G\x00T / HTTP/1.1\r\nHost: x\r\n\r\n", "bad_request_method"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", "malformed_request"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "header_too_large"),
    ],
)
async def test_malformed_requests_are_json_400s(port: int, request_bytes: bytes, code: str) -> None:
    status, headers, body = await exchange(port, request_bytes)
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    assert_error(json.loads(body), code)


async def test_well_formed_requests_are_served_as_before(port: int) -> None:
    status, _headers, body = await exchange(
        port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_mpaas_server_answers_json_and_logs_no_token(tmp_path: Path) -> None:
    """The real `mpaas server` uses that runner: the answer is JSON and stderr holds no token.

    (It also says that /metrics is public, as a fresh install without a metrics token is.)
    """
    data = tmp_path / "data"
    env = cli_env(data, f"sqlite:///{data / 'mpaas.db'}", tmp_path)
    cli(["init"], env)
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([*MPAAS, "server"], env=env, stdout=subprocess.DEVNULL, stderr=log_file)
        try:
            url = f"http://127.0.0.1:{env['MPAAS_PORT']}"
            _wait_until_up(proc, url)
            status, headers, body = asyncio.run(
                exchange(
                    int(env["MPAAS_PORT"]),
                    f"GET /api/v1/apps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\r\n\r\n".encode(),
                )
            )
        finally:
            proc.terminate()
            assert proc.wait(timeout=30) == 0  # SIGTERM is a graceful exit
    assert status == 400 and headers["content-type"].startswith("application/json")
    assert_error(json.loads(body), "header_too_large")
    logged = log_path.read_text()
    assert "S3cr3t" not in logged
    assert "refused a malformed request (LineTooLong, status 400)" in logged
    assert "GET /metrics is public" in logged


def _wait_until_up(proc: subprocess.Popen[Any], url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "server exited"
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return
        except OSError:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
