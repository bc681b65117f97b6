"""Errors of the model centre."""

from __future__ import annotations

from mpaas.banking.errors import BankingError
from mpaas.errors import Conflict, NotFound, ValidationError


class InvalidModel(BankingError, ValidationError):
    """An artefact, feature schema or calibration that does not validate (400)."""

    code = "invalid_model"


class ModelNotFound(BankingError, NotFound):
    code = "model_not_found"


class SchemaMismatch(BankingError, Conflict):
    """The model's features differ from what the scene's active rule set feeds it (409)."""

    code = "model_schema_mismatch"
