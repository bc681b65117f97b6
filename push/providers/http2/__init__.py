"""A small HTTP/2 client for push providers: many POSTs in flight over a few connections.

What it does: :class:`Http2Pool` keeps up to N connections to one origin;
:meth:`Http2ClientProtocol.submit` queues a POST on a connection and returns at once
with a future for its :class:`Http2Response`. Requests wait in a per-connection queue
until a stream is free (the peer's SETTINGS_MAX_CONCURRENT_STREAMS) and the send window
holds their body (WINDOW_UPDATE); the queue is drained once per event-loop tick in one
socket write; headers are encoded as HPACK literals with cached repeated fields
(:mod:`.hpack`); answers are matched by stream id, bodies are buffered until END_STREAM,
every DATA frame is acknowledged, and a request that times out (queued or sent) gives
up its place or resets its stream (:class:`RequestTimeout`). Nothing here knows APNs'
headers, payloads or status codes; :mod:`mpaas.push.providers.apns` builds on it.

Why not a library: aiohttp, our HTTP stack, has no HTTP/2 client, and aioapns couples
its HTTP/2 request path to APNs and, in 4.0:

- never acknowledges received DATA, so after ~64 KiB of error bodies on one connection
  the server stops sending answers; they stall until the idle timeout closes the
  connection and the pool re-sends them (duplicate notifications);
- ignores its own send window: with a few hundred requests in flight the 64 KiB
  window fills and h2 raises ``FlowControlError``, which aioapns answers by sleeping a
  second and re-sending (or, with one attempt, by failing the request);
- matches answers by the echoed ``apns-id`` and assumes each error body arrives in one
  DATA frame; an error without a JSON body never completes;
- raises ``InvalidStateError`` inside ``data_received``/``connection_lost`` when a
  waiting request was cancelled (a per-request timeout), and leaks its stream slot;
- drops the ``retry-after`` header;
- costs more CPU per request than the rest of mpaas's push pipeline: a task per request,
  hpack's table search and Huffman coding of every header, one socket write per request.

So aioapns keeps what it does well - the connection pool and the inactivity timer
(:class:`Http2Pool` is its pool, :class:`Http2ClientProtocol` subclasses its protocol) -
and h2 stays the protocol state machine (framing, stream states, flow-control
accounting); the request path on top of them is this package.

What runs where: everything runs on the caller's event-loop thread, with no thread and
no task per request. :meth:`Http2Pool.acquire` runs in the caller's coroutine and may
await a TCP/TLS connect. ``submit`` is synchronous: it queues the request, arms its
deadline (``loop.call_later``) and schedules one drain (``loop.call_soon``). The drain,
a loop callback, opens streams, encodes headers and writes the bodies the windows allow.
``data_received``, the transport's callback, feeds h2, acknowledges DATA, completes
futures on END_STREAM, fails them on RST_STREAM and drains again. A GOAWAY closes the
connection; ``connection_lost`` fails every request queued or in flight on it with
:class:`ConnectionClosed` and the pool forgets it. The caller awaits the futures and
calls :meth:`Http2ClientProtocol.abandon` for those it stops waiting for.

Modules: :mod:`.pool` (connections), :mod:`.protocol` (one connection: queue, drain,
answers), :mod:`.requests` (request, response, credential, timeout), :mod:`.hpack`.
"""

from aioapns.exceptions import ConnectionClosed
from aioapns.exceptions import ConnectionError as ConnectError

from mpaas.push.providers.http2.hpack import LiteralHeaderEncoder
from mpaas.push.providers.http2.pool import ConnectionFactory, Http2Pool
from mpaas.push.providers.http2.protocol import MAX_STREAMS_PER_CONNECTION, Http2ClientProtocol
from mpaas.push.providers.http2.requests import Credential, Http2Request, Http2Response, RequestTimeout

__all__ = [
    "MAX_STREAMS_PER_CONNECTION",
    "ConnectError",
    "ConnectionClosed",
    "ConnectionFactory",
    "Credential",
    "Http2ClientProtocol",
    "Http2Pool",
    "Http2Request",
    "Http2Response",
    "LiteralHeaderEncoder",
    "RequestTimeout",
]
