"""The HTTP server around the app: aiohttp's, with JSON errors even before routing.

A request aiohttp cannot parse (a header line over its 8190-byte limit, a bad request
line, a malformed header) never reaches a route, so the edge
(:mod:`mpaas.web.edge`) cannot answer it: aiohttp's ``RequestHandler.handle_error``
answers in plain text and logs the parser's exception at ERROR, whose message quotes
the first bytes of the offending line (for an over-long ``Authorization`` header, a
bearer token). :class:`JsonErrorRequestHandler` answers such requests with the same
``{"error": {"code", "message"}}`` as every route, with a fixed message that echoes
nothing of the request, and logs one WARNING line naming only the kind of error.

:func:`run` replaces ``web.run_app`` for ``mpaas server``: the same runner, site and
signal handling, with this handler.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from mpaas.web.edge import HTTP_CODES, error_response

log = logging.getLogger("aiohttp.server")


def _refusal(status: int, exc: BaseException | None) -> tuple[str, str]:
    """(code, message) for a request refused before routing; nothing of it is quoted."""
    if isinstance(exc, LineTooLong):
        return "header_too_large", "the request line or a header is longer than 8190 bytes"
    if isinstance(exc, BadHttpMethod):
        return "bad_request_method", "the request method is not valid HTTP"
    if isinstance(exc, HttpProcessingError):
        return "malformed_request", "the request is not valid HTTP/1.1"
    if status == HTTPStatus.GATEWAY_TIMEOUT:
        return "timeout", "the request took too long"
    if status >= 500:
        return "internal_error", "internal error"
    return HTTP_CODES.get(status, "bad_request"), HTTPStatus(status).phrase.lower()


class JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, whose own error answers are JSON and never log request bytes."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, HttpProcessingError):
            # The parser's message quotes request bytes: log the kind of error only.
            log.warning("refused a malformed request (%s, status %s)", type(exc).__name__, status)
        else:
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
        if request.writer.output_size > 0:  # a response is already under way: only closing is left
            raise ConnectionError("response already started; cannot send the error")
        code, text = _refusal(status, exc)
        response = error_response(status, code, text)
        response.force_close()
        return response


class JsonErrorServer(web.Server):
    """A ``web.Server`` whose connections use :class:`JsonErrorRequestHandler`."""

    def __call__(self) -> RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class JsonErrorAppRunner(web.AppRunner):
    """``web.AppRunner`` serving through :class:`JsonErrorServer`."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        server = JsonErrorServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **made._kwargs,
        )
        return server


async def start(app: web.Application, host: str, port: int, **site: Any) -> JsonErrorAppRunner:
    """Set up ``app`` and listen on ``host:port``; the caller cleans the runner up."""
    runner = JsonErrorAppRunner(app, access_log=None, handle_signals=site.pop("handle_signals", False))
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, **site).start()
    except BaseException:  # the port is taken, say: shut the app down before the error leaves
        await runner.cleanup()
        raise
    return runner


def run(
    app: web.Application,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, as ``web.run_app`` does, then shut down gracefully."""

    async def serve() -> None:
        runner = await start(app, host, port, reuse_port=reuse_port, handle_signals=True)
        # What start-up made (modules, compiled rules and models, caches) lives as long as the
        # process: out of the collector's generations, a collection during a request walks
        # only the young objects (the risk decision's p99, docs/benchmarks.md).
        gc.collect()
        gc.freeze()
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    loop = loop_factory() if loop_factory is not None else asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    task = loop.create_task(serve())
    try:
        loop.run_until_complete(task)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if not task.done():
            task.cancel()
            try:
                loop.run_until_complete(task)
            except (asyncio.CancelledError, web.GracefulExit, KeyboardInterrupt):
                pass
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)
