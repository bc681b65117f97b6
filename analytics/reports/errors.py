"""Errors of the reports: bad parameters (400) and an engine that cannot answer (503)."""

from __future__ import annotations

from mpaas.analytics.errors import AnalyticsError
from mpaas.errors import BadRequest


class ReportError(AnalyticsError):
    """Base of the reports' errors."""


class InvalidReportParameter(ReportError, BadRequest):
    code = "invalid_report_parameter"


class EngineUnavailable(ReportError):
    """The event store cannot be read now (no store yet, ClickHouse down)."""

    status = 503
    code = "analytics_engine_unavailable"
