"""Schemathesis against the live ``/api/openapi.json``: every operation, with and without auth.

A real server (the app on a free port, in a thread with its own event loop) answers
generated requests for each of the document's operations. Each case is sent three
times: with an admin token and a valid deployment key, the same against the seeded app
``bank`` (so that paths reach real rows rather than 404), and with no credentials. Every
answer must be a non-5xx that the document declares, in the declared shape, and a
request the schema allows must not be refused as invalid (``positive_data_acceptance``):
the document says what the server accepts, so that SDK authors can trust it.

Bounded for CI: a few examples per operation, derandomized, no shrinking (a failure
prints its reproduction).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks

from tests_support import free_port

#: Analytics and banking operations whose inputs a schema cannot fully say, so a
#: schema-valid request may still be refused (each is checked for "no server error" only):
#: report time ranges (a real day, ``to`` after ``from``, at most 366 days, an existing
#: zone) and saved reports' kind-dependent parameters; a catalogue's YAML or JSON text
#: (a binary body); a rule set's CEL must compile and its challenge be below deny; an
#: upstream operation's name, URL and rate (banking/api.py's schema does not say them yet).
LENIENT_PREFIXES = ("/api/v1/analytics/reports/", "/api/v1/operations")
LENIENT = {
    ("POST", "/api/v1/analytics/saved-reports"),
    ("GET", "/api/v1/analytics/saved-reports/{app}/{name}/run"),
    ("POST", "/api/v1/analytics/saved-reports/{app}/{name}/run"),
    ("PUT", "/api/v1/apps/{app}/catalog"),
    ("POST", "/api/v1/risk/rulesets"),
    ("POST", "/api/v1/risk/lists/import"),  # CSV lines valid and unrepeated: not a JSON schema
    ("POST", "/api/v1/risk/models"),  # the artefact must be a model file that loads
}


def _strict_operations() -> set[tuple[str, str]]:
    """(METHOD, path) of the operations held to every check: core, delivery, analytics and
    banking, but for :data:`LENIENT` ones.

    The gateway (``/gateway``, its keys and devices) is held to every check too: its
    document gives the X-Mgs-* headers, key ids and device ids as the server matches them.
    """
    from mpaas.analytics.api import api as analytics
    from mpaas.analytics.reports.api import api as reports
    from mpaas.banking.api import api as banking
    from mpaas.banking.risk.api import api as risk
    from mpaas.banking.risk.modelcentre.api import api as risk_models
    from mpaas.gateway.api import api as gateway
    from mpaas.identity.api import api as identity
    from mpaas.ops.api import api as ops
    from mpaas.packages.api import api as packages
    from mpaas.packages.protocols.api import api as release_clients
    from mpaas.packages.releases.api import api as releases
    from mpaas.push.admin_api import api as push_admin
    from mpaas.push.api import api as push
    from mpaas.signing.api import api as signing
    from mpaas.web.openapi import openapi_path

    apis = (
        ops,
        identity,
        packages,
        signing,
        push,
        push_admin,
        releases,
        release_clients,
        analytics,
        reports,
        banking,
        risk,
        risk_models,
        gateway,
    )
    every = {(ep.method, openapi_path(ep.path)) for api in apis for ep in api.endpoints}
    return {op for op in every if op not in LENIENT and not op[1].startswith(LENIENT_PREFIXES)}


STRICT = _strict_operations()
#: Date-time fields the server bounds relative to now, which JSON Schema cannot say; the
#: case gets an in-range value instead (the field itself is still sent).
NEAR_FUTURE_FIELDS = {"send_at": timedelta(days=1), "expires_at": timedelta(days=30)}
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.response_schema_conformance,
    checks.positive_data_acceptance,
]
SERVER_ERRORS_ONLY = [checks.not_a_server_error]


@dataclass
class Live:
    url: str
    admin: str
    deployment_key: str


def _run_server(tmp: Path) -> Iterator[Live]:
    from aiohttp import web

    from mpaas.app import create_app
    from mpaas.appkeys import DB
    from mpaas.identity import tenancy
    from mpaas.identity.audit import Actor
    from mpaas.identity.tokens import create_token
    from mpaas.settings import Settings

    data = tmp / "data"
    settings_ = Settings.from_env(
        {},
        {
            "data_dir": data,
            "database_url": f"sqlite:///{data / 'mpaas.db'}",
            "auto_migrate": True,
            "log_json": False,
            "console_argon2_memory_kib": 1024,  # sign-in is fuzzed: cheap argon2id
        },
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = free_port()
    app = create_app(settings_)
    runner = web.AppRunner(app, access_log=None)

    async def start() -> Live:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        db = app[DB]
        _row, token = await create_token(db, Actor("schemathesis"), name="st", role="admin")
        _app, channels = await tenancy.create_app(db, Actor("schemathesis"), "bank", ["ios", "android"])
        return Live(f"http://127.0.0.1:{port}", token, channels[0].deployment_key)

    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    yield from _run_server(tmp_path_factory.mktemp("schemathesis"))


@pytest.fixture(scope="module")
def api_schema(live: Live) -> Any:
    schema = schemathesis.openapi.from_url(live.url + "/api/openapi.json")
    # The document says (info.description) that no string may hold U+0000: PostgreSQL
    # refuses it in text, so the server refuses it everywhere with a 400.
    schema.config.generation.update(allow_x00=False)
    return schema


def _on_bank(case: Any) -> bool:
    """Point the case at the seeded app (and a real channel); False if it names no app."""
    if "app" not in (case.path_parameters or {}):
        return False
    case.path_parameters["app"] = "bank"
    if "channel" in case.path_parameters:
        case.path_parameters["channel"] = "staging"
    return True


def _near_future(case: Any) -> Any:
    if isinstance(case.body, dict):
        for name, ahead in NEAR_FUTURE_FIELDS.items():
            if name in case.body:
                case.body[name] = (datetime.now(UTC) + ahead).isoformat()
    return case


def _exercise(operation: Any, live: Live) -> None:
    strict = (operation.method.upper(), operation.path) in STRICT
    used = CHECKS if strict else SERVER_ERRORS_ONLY
    authed = {"Authorization": f"Bearer {live.admin}", "X-Deployment-Key": live.deployment_key}

    @given(case=operation.as_strategy().map(_near_future))
    @settings(
        max_examples=3,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        for name in ("Authorization", "X-Deployment-Key", "X-Mpaas-Deployment-Key"):
            (case.headers or {}).pop(name, None)
        case.call_and_validate(base_url=live.url, headers=authed, checks=used)
        case.call_and_validate(base_url=live.url, checks=used)  # no credentials: 401, or public
        if _on_bank(case):
            case.call_and_validate(base_url=live.url, headers=authed, checks=used)

    run()


def _summary(exc: BaseException) -> str:
    """The failure's check names and the answer, without the reproduction's noise."""
    lines = [line.strip() for line in str(exc).splitlines()]
    kept = [line for line in lines if line.startswith(("- ST", "[", "`{", "curl"))]
    return " | ".join(kept)[:900] or f"{type(exc).__name__}: {str(exc)[:600]}"


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url, body, {"Content-Type": "application/json", **headers}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/track", b'{"event": "a\\u0000b", "userId": "u"}'),
        ("/v1/batch", b'{"batch": [{"type": "track", "event": "e", "userId": "\\\\\\u0000"}]}'),
        ("/client/v1/events", b'{"events": [{"event": "e", "properties": {"k\\u0000": 1}}]}'),
    ],
)
def test_ingest_refuses_nul_as_the_document_promises(live: Live, path: str, body: bytes) -> None:
    """info.description: no string may hold U+0000; the ingest routes skip the JSON parser
    the other routes use, so they check the raw body (an escaped backslash is not a NUL).

    Runs before the walk below, which may revoke the admin token it shares."""
    admin = {"Authorization": f"Bearer {live.admin}"}
    status, key = _post(live.url + "/api/v1/apps/bank/analytics/write-keys", b"{}", admin)
    assert status == 201
    auth = {"X-Deployment-Key": live.deployment_key, "Authorization": "Basic " + _basic(key["write_key"])}
    status, answer = _post(live.url + path, body, auth)
    assert (status, answer["error"]["code"]) == (400, "validation_error")
    harmless = body.replace(b"\\u0000", b"\\u0041")
    assert _post(live.url + path, harmless, auth)[0] == 200


def _basic(user: str) -> str:
    import base64

    return base64.b64encode(f"{user}:".encode()).decode()


def test_every_operation_keeps_to_its_spec(api_schema: Any, live: Live) -> None:
    """(The schemathesis pytest plugin's fixture loader does not run on pytest 9, so the
    operations are walked here, each with its own bounded hypothesis run.)"""
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 80
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        strict = (operation.method.upper(), operation.path) in STRICT
        try:
            _exercise(operation, live)
        except (Exception, BaseExceptionGroup) as exc:  # collected: one run reports every operation
            if strict or "SerializationNotPossible" not in type(exc).__name__:
                failures.append(f"{label}: {_summary(exc)}")
    assert not failures, "\n\n".join(failures)
