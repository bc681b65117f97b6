"""Gateway metrics per operation and result code, read by Prometheus at scrape time.

``mpaas_gateway_calls_total{operation,code}`` counts every answer of ``POST /gateway``;
``mpaas_gateway_call_seconds{operation}`` is the time from the handler's start to the
answer (body read, checks, the operation). As for HTTP metrics (``mpaas.web.edge``),
counting is plain integer arithmetic on the event loop's thread and the registry reads
the numbers only when ``/metrics`` is scraped.

``operation`` is the operation's name only when the gateway knows it (it is registered
in that version); anything else, including calls refused before their headers parse,
counts under ``(unknown)``, so callers cannot grow the label set at will.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

UNKNOWN = "(unknown)"
#: Seconds; from a cached HMAC call (well under a millisecond) to an upstream timeout.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
_BOUNDS = tuple(floatToGoString(b) for b in (*BUCKETS, float("inf")))


class _Latency:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0


class GatewayMetrics:
    """Counts per (operation, result code) and a latency histogram per operation."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.calls: dict[tuple[str, int], int] = {}
        self.latency: dict[str, _Latency] = {}
        if registry is not None:
            registry.register(self)

    def record(self, operation: str, code: int, seconds: float) -> None:
        key = (operation, code)
        calls = self.calls
        calls[key] = calls.get(key, 0) + 1
        latency = self.latency.get(operation)
        if latency is None:
            latency = self.latency[operation] = _Latency()
        latency.counts[bisect_left(BUCKETS, seconds)] += 1
        latency.total += seconds

    def collect(self) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "mpaas_gateway_calls", "Gateway calls by operation and result code", labels=["operation", "code"]
        )
        for (operation, code), n in sorted(self.calls.items()):
            calls.add_metric([operation, str(code)], n)
        latency = HistogramMetricFamily(
            "mpaas_gateway_call_seconds", "Gateway call latency by operation", labels=["operation"]
        )
        for operation, stats in sorted(self.latency.items()):
            cumulative, running = [], 0
            for bound, n in zip(_BOUNDS, stats.counts, strict=True):
                running += n
                cumulative.append((bound, running))
            latency.add_metric([operation], cumulative, stats.total)
        yield calls
        yield latency
