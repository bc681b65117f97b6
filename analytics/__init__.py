"""mpaas.analytics: tracking points from apps, in-house.

Events arrive through the native ``POST /client/v1/events`` or the Segment-compatible
``/v1/*`` routes (:mod:`mpaas.analytics.ingest`), are made durable in a spool before the
client is answered (:mod:`mpaas.analytics.spool`: local segment files with group commit,
or NATS JetStream), and a single loader (:mod:`mpaas.analytics.loader`) normalises,
corrects clocks, deduplicates, masks personal data and bulk-loads them into DuckDB
(:mod:`mpaas.analytics.store`). The event catalogue (:mod:`mpaas.analytics.catalog`)
declares tracking points. See docs/analytics.md.
"""
