"""Imports every module that defines tables, so that metadata is complete.

Alembic's autogenerate and the migration-drift test need all tables registered;
each domain adds its models module here.
"""

from __future__ import annotations

import importlib

MODEL_MODULES = (
    "mpaas.models",
    "mpaas.packages.models",
    "mpaas.signing.models",
    "mpaas.packages.release_models",
    "mpaas.push.models",
)


def import_all_models() -> None:
    for name in MODEL_MODULES:
        importlib.import_module(name)
