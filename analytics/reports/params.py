"""Report parameters and results: the typed contract between the queries and their callers.

Every report is a function ``report(engine, query, ...)`` (see :mod:`.queries` and the
modules it re-exports) that returns one of the frozen dataclasses below. Counts are
``int``; rates and shares are ``float`` computed in Python from those integers, so both
engines give identical results. Percentiles are linear-interpolated (R-7:
DuckDB ``quantile_cont``, ClickHouse ``quantileExactInclusive``).

Definitions (docs/analytics.md, "Reports: definitions"):
- time range: ``[start, end)``, UTC instants; an event exactly at ``end`` is outside;
- day: a calendar day in ``query.tz`` (Asia/Shanghai by default);
- person: ``coalesce(user id linked to the event's user id by alias, event user id,
  user id linked to the anonymous id by identify/alias, anonymous id)``;
- activity: any event the app sent (``source != 'server'``);
- ties: events of one person at the same instant are ordered by ``message_id``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mpaas.analytics.reports.errors import InvalidReportParameter

DEFAULT_TZ = "Asia/Shanghai"
DEFAULT_FUNNEL_WINDOW = timedelta(days=14)
SESSION_GAP = timedelta(minutes=30)

Interval = Literal["hour", "day"]
Measure = Literal["events", "users"]
RetentionMode = Literal["classic", "on_or_after"]
FilterOp = Literal["eq", "neq", "in", "not_in", "contains", "is_set", "is_not_set", "gt", "lt"]

#: Event columns a filter or breakdown may name; anything else is ``properties.<name>``.
COLUMNS = frozenset(
    {"event", "type", "source", "channel", "app_version", "platform", "os", "os_version", "device_model"}
)
FIELD_RE = re.compile(r"(?:properties\.)?[A-Za-z_$][A-Za-z0-9_$.\-]{0,99}")
NAME_RE = re.compile(r"[^\x00-\x1f]{1,200}")


def check_field(name: str) -> str:
    """A filter/breakdown field: a column in :data:`COLUMNS` or ``properties.<key>``."""
    if not FIELD_RE.fullmatch(name) or (name not in COLUMNS and not name.startswith("properties.")):
        raise InvalidReportParameter(
            f"field {name!r}: use one of {', '.join(sorted(COLUMNS))} or properties.<name>"
        )
    return name


def check_tz(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidReportParameter(f"unknown time zone {tz!r}") from exc


@dataclass(frozen=True)
class TimeRange:
    """``[start, end)`` in UTC. Both must be time-zone aware."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise InvalidReportParameter("time range bounds must carry a time zone")
        if self.end <= self.start:
            raise InvalidReportParameter("the time range ends before it starts")

    @classmethod
    def days(cls, first: date, last: date, tz: str = DEFAULT_TZ) -> TimeRange:
        """Local days ``first`` to ``last``, both included, in ``tz``."""
        zone = check_tz(tz)
        start = datetime.combine(first, time(), zone)
        end = datetime.combine(last + timedelta(days=1), time(), zone)
        return cls(start, end)


@dataclass(frozen=True)
class PropertyFilter:
    """``field op value``; ``field`` is a column or ``properties.<key>``; values compare as text
    (``gt``/``lt`` compare as numbers)."""

    field: str
    op: FilterOp = "eq"
    value: str | float | tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_field(self.field)


@dataclass(frozen=True)
class ReportQuery:
    """What every report takes: the app, the range, filters on events, a breakdown, the zone."""

    app: str
    range: TimeRange
    filters: tuple[PropertyFilter, ...] = ()
    breakdown: str | None = None
    tz: str = DEFAULT_TZ

    def __post_init__(self) -> None:
        if not NAME_RE.fullmatch(self.app):
            raise InvalidReportParameter("app: 1 to 200 printable characters")
        check_tz(self.tz)
        if self.breakdown is not None:
            check_field(self.breakdown)


# ---- events over time -------------------------------------------------------------------


@dataclass(frozen=True)
class TrendPoint:
    bucket: datetime  #: the bucket's start, local time in ``query.tz``, naive
    events: int
    users: int


@dataclass(frozen=True)
class TrendSeries:
    event: str
    breakdown: str | None  #: the breakdown value (``None``: no breakdown, or value not set)
    points: tuple[TrendPoint, ...]


@dataclass(frozen=True)
class TrendResult:
    interval: Interval
    series: tuple[TrendSeries, ...]


# ---- active users -----------------------------------------------------------------------


@dataclass(frozen=True)
class ActiveUsersDay:
    day: date
    dau: int
    wau: int  #: persons active on any of the 7 days ending with ``day``
    mau: int  #: persons active on any of the 30 days ending with ``day``

    @property
    def stickiness(self) -> float:
        """DAU / MAU."""
        return self.dau / self.mau if self.mau else 0.0


@dataclass(frozen=True)
class ActiveUsersResult:
    days: tuple[ActiveUsersDay, ...]


@dataclass(frozen=True)
class NewReturningDay:
    day: date
    new: int  #: persons whose first event ever falls on ``day``
    returning: int  #: persons active on ``day`` whose first event was earlier


@dataclass(frozen=True)
class NewReturningResult:
    days: tuple[NewReturningDay, ...]


@dataclass(frozen=True)
class StickinessResult:
    """PostHog's stickiness: how many persons were active on exactly k days of the range."""

    days_in_range: int
    persons_by_days_active: tuple[int, ...]  #: index k-1 -> persons active on exactly k days


# ---- retention --------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionCohort:
    day: date
    size: int
    #: index n: persons of the cohort retained on day n (``None``: day n is not over by the
    #: range's end, so not measured)
    retained: tuple[int | None, ...]

    def shares(self) -> tuple[float | None, ...]:
        return tuple(None if n is None else (n / self.size if self.size else 0.0) for n in self.retained)


@dataclass(frozen=True)
class RetentionResult:
    mode: RetentionMode
    periods: int
    cohorts: tuple[RetentionCohort, ...]


# ---- funnels ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FunnelStep:
    event: str
    filters: tuple[PropertyFilter, ...] = ()


@dataclass(frozen=True)
class FunnelStepResult:
    event: str
    count: int  #: persons whose level is at least this step
    dropped: int  #: persons of the previous step who did not reach this one (0 for step 1)
    median_seconds: float | None  #: median time from the previous step (None for step 1)


@dataclass(frozen=True)
class FunnelGroup:
    breakdown: str | None
    steps: tuple[FunnelStepResult, ...]

    @property
    def conversion(self) -> float:
        """Last step's persons / first step's persons."""
        first = self.steps[0].count if self.steps else 0
        return self.steps[-1].count / first if first else 0.0


@dataclass(frozen=True)
class FunnelResult:
    window_seconds: int
    groups: tuple[FunnelGroup, ...]  #: one group (breakdown None) without a breakdown


# ---- paths ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PathStep:
    next_event: str  #: "$end" when the session ended after the event
    count: int
    users: int


@dataclass(frozen=True)
class PathsResult:
    event: str
    total: int  #: occurrences of ``event``
    steps: tuple[PathStep, ...]


# ---- update adoption --------------------------------------------------------------------


@dataclass(frozen=True)
class VersionShare:
    version: str | None  #: None: active devices that never reported a version of the package
    devices: int
    share: float


@dataclass(frozen=True)
class AdoptionDay:
    day: date
    active_devices: int
    versions: tuple[VersionShare, ...]


@dataclass(frozen=True)
class AdoptionResult:
    package_id: str
    days: tuple[AdoptionDay, ...]


# ---- push -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushRow:
    push_id: str
    provider: str
    sent: int
    delivered: int
    failed: int
    arrived: int
    opened: int

    @property
    def arrival_rate(self) -> float:
        """Arrived / sent."""
        return self.arrived / self.sent if self.sent else 0.0

    @property
    def open_rate(self) -> float:
        """Opened / arrived."""
        return self.opened / self.arrived if self.arrived else 0.0


@dataclass(frozen=True)
class PushResult:
    rows: tuple[PushRow, ...]  #: per (push_id, provider)

    def totals(self, by: Literal["push_id", "provider"]) -> tuple[PushRow, ...]:
        """Rows summed per message or per provider (a delivery has one of each)."""
        sums: dict[str, list[int]] = {}
        for r in self.rows:
            acc = sums.setdefault(getattr(r, by), [0] * 5)
            for i, n in enumerate((r.sent, r.delivered, r.failed, r.arrived, r.opened)):
                acc[i] += n
        return tuple(
            PushRow(k if by == "push_id" else "*", k if by == "provider" else "*", *v)
            for k, v in sorted(sums.items())
        )


# ---- UX ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Percentiles:
    count: int
    p50: float | None
    p90: float | None
    p99: float | None


@dataclass(frozen=True)
class StartupRow:
    app_version: str | None
    device_model: str | None
    start_type: str  #: cold | warm
    duration_ms: Percentiles


@dataclass(frozen=True)
class StabilityRow:
    app_version: str | None  #: None: all versions together is the ``total`` of the result
    users: int
    crash_users: int
    sessions: int
    crash_sessions: int
    anr_users: int

    @property
    def crash_free_users(self) -> float:
        return 1 - self.crash_users / self.users if self.users else 1.0

    @property
    def crash_free_sessions(self) -> float:
        return 1 - self.crash_sessions / self.sessions if self.sessions else 1.0

    @property
    def anr_rate(self) -> float:
        """Persons with at least one ANR / active persons."""
        return self.anr_users / self.users if self.users else 0.0


@dataclass(frozen=True)
class StabilityResult:
    rows: tuple[StabilityRow, ...]  #: per app version
    total: StabilityRow


@dataclass(frozen=True)
class H5Row:
    package_id: str | None
    package_version: str | None
    load_ms: Percentiles
    white_screen_ms: Percentiles


@dataclass(frozen=True)
class NetworkRow:
    host: str | None
    path_template: str | None
    errors: int
    users: int  #: persons with at least one error on this endpoint
    active_users: int  #: persons active in the range (the denominator)

    @property
    def error_rate(self) -> float:
        """Persons affected / active persons."""
        return self.users / self.active_users if self.active_users else 0.0


@dataclass(frozen=True)
class UxResult:
    startup: tuple[StartupRow, ...] = field(default=())
    h5: tuple[H5Row, ...] = field(default=())
    network: tuple[NetworkRow, ...] = field(default=())
