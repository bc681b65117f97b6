"""Every report, in one place: ``report(engine, query, ...)`` returning a typed result."""

from __future__ import annotations

from mpaas.analytics.reports.activity import (
    active_users,
    events_over_time,
    new_vs_returning,
    retention,
    stickiness,
)
from mpaas.analytics.reports.delivery import push_arrival, update_adoption
from mpaas.analytics.reports.engine import ReportEngine, StoreEngine, engine_for
from mpaas.analytics.reports.funnels import funnel, paths
from mpaas.analytics.reports.ux import h5_pages, network_errors, stability, startup

__all__ = [
    "ReportEngine",
    "StoreEngine",
    "active_users",
    "engine_for",
    "events_over_time",
    "funnel",
    "h5_pages",
    "network_errors",
    "new_vs_returning",
    "paths",
    "push_arrival",
    "retention",
    "stability",
    "startup",
    "stickiness",
    "update_adoption",
]
