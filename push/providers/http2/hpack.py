"""An HPACK encoder without a dynamic table (RFC 7541), for our HTTP/2 client connections.

hpack, the encoder h2 ships with, searches its whole table and Huffman-codes every
value in pure Python, which was most of the client's CPU per request. This one sends
every field as a literal, never indexed, and caches the encoded bytes of repeated
fields, so a request costs little more than a ``bytes.join``.
"""

from __future__ import annotations

from collections.abc import Iterable


def _hpack_int(value: int, prefix_bits: int, flags: int) -> bytes:
    """RFC 7541 §5.1 integer with an N-bit prefix; ``flags`` fills the bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((flags | value,))
    out = bytearray((flags | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def _hpack_str(data: bytes) -> bytes:
    """RFC 7541 §5.2 string literal, not Huffman-coded (H = 0)."""
    return _hpack_int(len(data), 7, 0) + data


#: RFC 7541 Appendix A: fully indexed fields and indexed names we send.
_HPACK_STATIC_FIELDS = {
    (b":method", b"GET"): 2,
    (b":method", b"POST"): 3,
    (b":scheme", b"http"): 6,
    (b":scheme", b"https"): 7,
}
_HPACK_STATIC_NAMES = {b":authority": 1, b":method": 2, b":path": 4, b":scheme": 6, b"authorization": 23}
_HPACK_NEVER_INDEXED = frozenset({b"authorization"})
#: Encoded repeated fields kept per connection (a JWT, a topic, a few expirations and collapse ids).
_HEADER_CACHE_SIZE = 256


class LiteralHeaderEncoder:
    """An HPACK encoder without a dynamic table, replacing hpack's on our h2 connections.

    Apple asks for ``:path``, ``authorization`` and per-request values to be sent as
    literals without indexing anyway, so this encoder sends every field that way
    (static-table names where there is one), never indexes (``authorization`` as
    never-indexed), announces a dynamic table of size 0 in its first block, and caches
    the encoded bytes of repeated fields (topic, push type, priority, collapse id,
    expiration, the JWT): only the ``per_request`` fields (by default ``:path`` and
    ``apns-id``) are encoded per request.
    """

    def __init__(self, *, per_request: frozenset[bytes] = frozenset({b":path", b"apns-id"})) -> None:
        self._per_request = per_request
        self._cache: dict[tuple[bytes, bytes], bytes] = {}
        self._announced = False
        #: Set by h2 on the peer's SETTINGS_HEADER_TABLE_SIZE; irrelevant to an encoder that never indexes.
        self.header_table_size = 4096

    def encode(self, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
        parts: list[bytes] = []
        if not self._announced:
            parts.append(b"\x20")  # dynamic table size update: 0 (RFC 7541 §6.3)
            self._announced = True
        cache = self._cache
        for name, value in headers:
            block = cache.get((name, value))
            if block is None:
                block = self.encode_field(name, value)
                if name not in self._per_request:
                    if len(cache) >= _HEADER_CACHE_SIZE:
                        cache.clear()
                    cache[(name, value)] = block
            parts.append(block)
        return b"".join(parts)

    @staticmethod
    def encode_field(name: bytes, value: bytes) -> bytes:
        index = _HPACK_STATIC_FIELDS.get((name, value))
        if index is not None:
            return bytes((0x80 | index,))
        flags = 0x10 if name in _HPACK_NEVER_INDEXED else 0x00
        name_index = _HPACK_STATIC_NAMES.get(name)
        if name_index is not None:
            return _hpack_int(name_index, 4, flags) + _hpack_str(value)
        return bytes((flags,)) + _hpack_str(name) + _hpack_str(value)
