"""The list of domain APIs mounted by the app factory; each domain adds one line."""

from __future__ import annotations

from mpaas.http import Api


def domain_apis() -> list[Api]:
    from mpaas.core_api import api as core
    from mpaas.packages.api import api as packages
    from mpaas.packages.client_api import api as release_clients
    from mpaas.packages.release_api import api as releases
    from mpaas.push.api import api as push
    from mpaas.signing.api import api as signing

    return [core, packages, signing, push, releases, release_clients]
