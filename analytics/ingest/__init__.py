"""Ingest: the HTTP routes that accept events (native and Segment-compatible).

The hot path does only what decides whether a request can ever succeed: authenticate,
check sizes, check that the JSON parses into a batch of objects. Then it appends the
raw batch, with the server's receivedAt, to the spool and answers once that is durable.
"""
