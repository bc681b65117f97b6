"""The list of domain APIs mounted by the app factory; each domain adds one line."""

from __future__ import annotations

from mpaas.http import Api


def domain_apis() -> list[Api]:
    from mpaas.core_api import api as core
    from mpaas.packages.api import api as packages

    return [core, packages]
