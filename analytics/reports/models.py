"""SQL tables of the reports subpackage: saved reports.

A saved report is a name plus a report kind and its parameters (the JSON the API
takes), per app, so that the web pages, the CLI and the demo share them. Results are
never stored: a saved report is run again each time, over the events as they are.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from mpaas.storage.db import utcnow


class SavedReport(SQLModel, table=True):
    """A named report of an app: ``kind`` (``funnel``, ``retention``, ...) and its parameters."""

    __tablename__ = "analytics_saved_reports"
    __table_args__ = (UniqueConstraint("app_id", "name", name="uq_analytics_saved_reports_app_name"),)

    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(foreign_key="apps.id", index=True)
    name: str = Field(max_length=128)
    kind: str = Field(max_length=32)
    description: str = Field(default="", max_length=1000)
    #: The report's parameters as the API takes them, without ``app`` (the row's app).
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_by: str = Field(default="", max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    updated_by: str = Field(default="", max_length=128)
