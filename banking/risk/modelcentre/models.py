"""SQL tables of the model centre: registered model versions (artefact bytes included) and
which version scores each (scene, model name).

A version is never changed once stored: a new artefact is a new version. The artefact sits
in the row (models are kilobytes to a few megabytes, ADR 0013), with its sha256.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from mpaas.storage.db import utcnow


class RiskModel(SQLModel, table=True):
    """One immutable version of a scoring model."""

    __tablename__ = "risk_models"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_risk_models_version"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64)
    version: int
    #: ``lightgbm`` (text format) or ``onnx``.
    format: str = Field(max_length=16)
    #: Dotted context paths, in the order the model takes them.
    features: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    calibration: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    description: str = Field(default="", max_length=512)
    sha256: str = Field(max_length=64)
    size: int
    artefact: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


class RiskModelActivation(SQLModel, table=True):
    """The version of model ``name`` that scores ``scene`` (one row per scene and name)."""

    __tablename__ = "risk_model_activations"

    scene: str = Field(primary_key=True, max_length=32)
    name: str = Field(primary_key=True, max_length=64)
    version: int
    activated_by: str = Field(max_length=128)
    activated_at: datetime = Field(default_factory=utcnow)
