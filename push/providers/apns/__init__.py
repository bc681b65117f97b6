"""APNs over HTTP/2 with token (.p8) authentication.

- :mod:`.auth`: the ES256 provider token (JWT), refreshed on a clock and after a 403;
- :mod:`.payload`: the ``apns-*`` headers and the JSON payload of one notification,
  and what is refused before sending;
- :mod:`.answers`: reading an answer and mapping its status and reason to what the
  delivery queue should do;
- :mod:`.protocol`: the connection, our HTTP/2 client (:mod:`mpaas.push.providers.http2`)
  with aioapns' ``send_notification`` kept working on it;
- :mod:`.provider`: :class:`ApnsProvider`, batches of notifications over the pool.
"""

from mpaas.push.providers.apns.provider import ApnsEndpoint, ApnsProvider

__all__ = ["ApnsEndpoint", "ApnsProvider"]
