"""Risk metrics for Prometheus, and the hit-rate drift alert.

Per rule (scene, rule): hits, not-evaluated and errors. Per model: scores (a histogram of
the score), errors and scoring latency. Counting is integer arithmetic on the event loop's
thread; the registry reads the numbers at scrape time (the pattern of
``mpaas.gateway.metrics``).

The alert: for each rule of each scene, the hit rate of the last hour is compared with the
hourly hit rates of the 7 days before it, computed from stored decisions; a move of more
than 3σ logs a WARNING and sets ``mpaas_risk_rule_alert{scene,rule}`` to 1 (0 once back).
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString
from sqlmodel import col, select

from mpaas.banking.risk.models import RiskDecision
from mpaas.storage.db import Database, as_stored_utc

log = logging.getLogger("mpaas.banking.risk")
SCORE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
SECONDS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1)
HOUR = timedelta(hours=1)
BASELINE_HOURS = 7 * 24
#: Fewer decisions than this in the last hour decide nothing.
MIN_DECISIONS = 20
#: A baseline this flat still needs this much of a move (a rule that never hit, then hits 1 %).
MIN_SIGMA = 0.005


class _Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds, self.counts, self.total = bounds, [0] * (len(bounds) + 1), 0.0

    def add(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += n
            out.append((floatToGoString(bound), running))
        return out


class Tally:
    """How often each (label, rule) had each outcome. Kept as counts of whole outcome patterns
    (a decision's rule names and outcomes, in order: few distinct ones in practice) and
    expanded when read: one dict update per decision instead of one per rule."""

    LIMIT = 1024  # distinct patterns kept before expanding

    def __init__(self) -> None:
        self._pending: dict[tuple[str, tuple[str, ...], tuple[str, ...]], int] = {}
        self._counts: dict[tuple[str, str, str], int] = {}

    def add(self, label: str, outcomes: Mapping[str, str]) -> None:
        key = (label, tuple(outcomes), tuple(outcomes.values()))
        pending = self._pending
        pending[key] = pending.get(key, 0) + 1
        if len(pending) > self.LIMIT:
            self._fold()

    def add_one(self, label: str, rule: str, outcome: str) -> None:
        key = (label, rule, outcome)
        self._counts[key] = self._counts.get(key, 0) + 1

    def counts(self) -> dict[tuple[str, str, str], int]:
        """(label, rule, outcome) → decisions."""
        self._fold()
        return self._counts

    def _fold(self) -> None:
        pending, self._pending = self._pending, {}
        counts = self._counts
        for (label, rules, outcomes), n in pending.items():
            for rule, outcome in zip(rules, outcomes, strict=True):
                key = (label, rule, outcome)
                counts[key] = counts.get(key, 0) + n


class RiskMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._rules = Tally()
        self.model_scores: dict[str, _Histogram] = {}
        self.model_seconds: dict[str, _Histogram] = {}
        self.model_errors: dict[str, int] = {}
        self.alerts: dict[tuple[str, str], int] = {}
        if registry is not None:
            registry.register(self)

    @property
    def rule_counts(self) -> dict[tuple[str, str, str], int]:
        """(scene, rule, outcome or ``error``) → decisions."""
        return self._rules.counts()

    def rules(self, scene: str, outcomes: Mapping[str, str], errors: tuple[str, ...]) -> None:
        self._rules.add(scene, outcomes)
        for rule in errors:
            self._rules.add_one(scene, rule, "error")

    def model(self, name: str, score: float | None, seconds: float, *, error: bool) -> None:
        self.model_seconds.setdefault(name, _Histogram(SECONDS_BUCKETS)).add(seconds)
        if error:
            self.model_errors[name] = self.model_errors.get(name, 0) + 1
        elif score is not None:
            self.model_scores.setdefault(name, _Histogram(SCORE_BUCKETS)).add(score)

    def collect(self) -> Iterator[Metric]:
        names = {"hit": "hits", "not_evaluated": "not_evaluated", "error": "errors", "snoozed": "snoozed"}
        for outcome, metric in names.items():
            family = CounterMetricFamily(
                f"mpaas_risk_rule_{metric}", f"Risk rule outcomes: {outcome}", labels=["scene", "rule"]
            )
            for (scene, rule, seen), n in sorted(self.rule_counts.items()):
                if seen == outcome:
                    family.add_metric([scene, rule], n)
            yield family
        scores = HistogramMetricFamily("mpaas_risk_model_score", "Risk model scores", labels=["model"])
        for name, hist in sorted(self.model_scores.items()):
            scores.add_metric([name], hist.cumulative(), hist.total)
        yield scores
        seconds = HistogramMetricFamily(
            "mpaas_risk_model_seconds", "Risk model scoring time (loading and scoring)", labels=["model"]
        )
        for name, hist in sorted(self.model_seconds.items()):
            seconds.add_metric([name], hist.cumulative(), hist.total)
        yield seconds
        errors = CounterMetricFamily(
            "mpaas_risk_model_errors", "Risk model failures and timeouts", labels=["model"]
        )
        for name, n in sorted(self.model_errors.items()):
            errors.add_metric([name], n)
        yield errors
        alert = GaugeMetricFamily(
            "mpaas_risk_rule_alert",
            "1 while a rule's hit rate is 3 sigma off its 7-day baseline",
            labels=["scene", "rule"],
        )
        for (scene, rule), value in sorted(self.alerts.items()):
            alert.add_metric([scene, rule], value)
        yield alert


@dataclass(frozen=True)
class Drift:
    scene: str
    rule: str
    rate: float
    mean: float
    sigma: float
    decisions: int

    @property
    def alerting(self) -> bool:
        return self.decisions >= MIN_DECISIONS and abs(self.rate - self.mean) > 3 * max(self.sigma, MIN_SIGMA)


async def check_drift(db: Database, now: datetime, metrics: RiskMetrics) -> list[Drift]:
    """Compare each rule's hit rate in the hour before ``now`` with the 168 hours before that
    (from stored decisions); update the alert gauge and log a WARNING per alerting rule."""
    start = now - HOUR * (BASELINE_HOURS + 1)
    query = (
        select(RiskDecision.scene, RiskDecision.outcomes, RiskDecision.created_at)
        .where(col(RiskDecision.created_at) >= start, col(RiskDecision.created_at) < now)
        .order_by(col(RiskDecision.created_at))
    )
    # (scene) → hour index (0 = the last hour) → [decisions, {rule: hits}]
    hours: dict[str, dict[int, tuple[list[int], dict[str, int]]]] = {}
    async with db.session() as s:
        for scene, outcomes, created_at in (await s.exec(query)).all():
            index = int((now - as_stored_utc(created_at)) / HOUR)
            n, hits = hours.setdefault(scene, {}).setdefault(index, ([0], {}))
            n[0] += 1
            for rule, outcome in (outcomes or {}).items():
                hits[rule] = hits.get(rule, 0) + (outcome == "hit")
    found: list[Drift] = []
    for scene, by_hour in sorted(hours.items()):
        current = by_hour.get(0)
        if current is None:
            continue
        rules = sorted({r for _n, hits in by_hour.values() for r in hits})
        for rule in rules:
            baseline = [h[rule] / n[0] for i, (n, h) in by_hour.items() if i > 0 and rule in h and n[0]]
            if len(baseline) < 2:
                continue
            mean = sum(baseline) / len(baseline)
            sigma = math.sqrt(sum((x - mean) ** 2 for x in baseline) / (len(baseline) - 1))
            rate = current[1].get(rule, 0) / current[0][0]
            drift = Drift(scene, rule, rate, mean, sigma, current[0][0])
            was = metrics.alerts.get((scene, rule), 0)
            metrics.alerts[(scene, rule)] = int(drift.alerting)
            if drift.alerting:
                found.append(drift)
                log.warning(
                    "risk rule hit rate moved 3 sigma from its 7-day baseline",
                    extra={"scene": scene, "rule": rule, "rate": rate, "mean": mean, "sigma": sigma},
                )
            elif was:
                log.info("risk rule hit rate back within 3 sigma", extra={"scene": scene, "rule": rule})
    return found


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
