"""The model centre through its admin API and `mpaas risk models …`: versions are registered
immutable with their sha256, activation is refused when the features do not match the
scene's rule set, an activated version scores decisions (and a deadline overrun leaves the
model's rules not evaluated), and the CLI round-trips."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from click.testing import CliRunner, Result

from mpaas.app import create_app
from mpaas.appkeys import DB, EDGE
from mpaas.banking.risk.counters import SqlCounterStore
from mpaas.banking.risk.decision import RiskContext
from mpaas.banking.risk.engine import CelRiskEngine
from mpaas.banking.risk.modelcentre.api import MODELS
from mpaas.banking.risk.modelcentre.api import api as models_api
from mpaas.banking.risk.modelcentre.registry import shipped
from mpaas.banking.risk.modelcentre.scorer import ModelCentreScorer
from mpaas.banking.risk.rules import parse_document
from mpaas.banking.risk.store import RuleSets, default_document
from mpaas.identity.audit import Actor
from mpaas.identity.guard import require_roles
from mpaas.settings import Settings
from tests_support import assert_error

FEATURES: list[str] = list(shipped().meta["features"])


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> TestClient:  # type: ignore[type-arg]
    """The app, with the model centre's routes (until mpaas/app.py mounts them itself)."""
    app = create_app(settings)
    if not any(getattr(r, "canonical", "") == MODELS for r in app.router.resources()):
        models_api.register(app, app[EDGE], require_roles)
    return await aiohttp_client(app)


def upload(**over: Any) -> dict[str, Any]:
    package = shipped()
    body = {
        "name": package.name,
        "format": "lightgbm",
        "features": FEATURES,
        "calibration": package.meta["calibration"],
        "description": "the shipped model, registered",
        "artefact": base64.b64encode(package.artefact).decode(),
    }
    return body | over


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
async def test_versions_are_immutable_and_activation_checks_the_schema(
    client: TestClient,  # type: ignore[type-arg]
    admin_headers: dict[str, str],
) -> None:
    first = await client.post(MODELS, json=upload(), headers=admin_headers)
    assert first.status == 201, await first.text()
    one = await first.json()
    assert (one["version"], one["sha256"]) == (1, hashlib.sha256(shipped().artefact).hexdigest())
    swapped = [FEATURES[1], FEATURES[0], *FEATURES[2:]]
    second = await client.post(MODELS, json=upload(features=swapped), headers=admin_headers)
    assert (await second.json())["version"] == 2
    # no route changes a version; version 1 is as registered
    assert (await client.put(f"{MODELS}/{one['name']}/1", json={}, headers=admin_headers)).status == 405
    shown = await (await client.get(f"{MODELS}/{one['name']}/1", headers=admin_headers)).json()
    assert (shown["features"], shown["sha256"]) == (FEATURES, one["sha256"])

    refused = await client.post(
        f"{MODELS}/{one['name']}/2/activate", json={"scene": "transfer"}, headers=admin_headers
    )
    assert refused.status == 409
    assert_error(await refused.json(), "model_schema_mismatch")
    assert "same features in another order" in (await refused.json())["error"]["message"]
    other_scene = await client.post(
        f"{MODELS}/{one['name']}/1/activate", json={"scene": "login"}, headers=admin_headers
    )
    assert other_scene.status == 409  # the login rules name no model
    listed = await (await client.get(MODELS, headers=admin_headers)).json()
    assert listed["active"] == [] and listed["total"] == 2

    ok = await client.post(
        f"{MODELS}/{one['name']}/1/activate", json={"scene": "transfer"}, headers=admin_headers
    )
    assert ok.status == 200, await ok.text()
    listed = await (await client.get(MODELS, headers=admin_headers)).json()
    assert [(i["version"], i["active_in"]) for i in listed["items"]] == [(2, []), (1, ["transfer"])]
    audit = await (await client.get("/api/v1/audit", headers=admin_headers)).json()
    trail = [(e["action"], e["target"]) for e in audit["items"] if e["action"].startswith("risk.model.")]
    name = one["name"]
    assert trail == [
        ("risk.model.activate", f"{name}@1"),
        ("risk.model.add", f"{name}@2"),
        ("risk.model.add", f"{name}@1"),
    ]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # about HTTP and the CLI, not SQL
async def test_bad_uploads_are_clear_4xx_and_store_nothing(
    client: TestClient,  # type: ignore[type-arg]
    admin_headers: dict[str, str],
    token_factory: Callable[[str], Any],
) -> None:
    bad = [
        (upload(artefact="%%%"), "artefact must be base64"),
        (upload(artefact=base64.b64encode(b"garbage").decode()), "not a LightGBM text model"),
        (upload(features=FEATURES[:3]), "takes 15 features but 3 are declared"),
        (upload(features=["amount"]), "must be a context path"),
        (upload(name="Bad Name"), "a model name must match"),
        (upload(calibration={"method": "magic"}), "calibration must be"),
        (upload(extra=1), "unknown field"),
    ]
    for body, fragment in bad:
        resp = await client.post(MODELS, json=body, headers=admin_headers)
        assert resp.status == 400, (fragment, await resp.text())
        assert fragment in (await resp.json())["error"]["message"]
    analyst = {"Authorization": f"Bearer {await token_factory('analyst')}"}
    assert (await client.post(MODELS, json=upload(), headers=analyst)).status == 403
    assert (await client.get(f"{MODELS}/nothing/1", headers=analyst)).status == 404
    assert (await (await client.get(MODELS, headers=analyst)).json())["items"] == []


async def test_an_activated_version_scores_and_an_overrun_is_not_evaluated(
    client: TestClient,  # type: ignore[type-arg]
    admin_headers: dict[str, str],
    transfer: Callable[..., RiskContext],
) -> None:
    db = client.app[DB]
    base = default_document("transfer")
    assert base is not None
    doc = base.to_dict()
    doc["rules"].append({"name": "model_says_yes", "expr": "model.score >= 0.0", "weight": 1, "message": "m"})
    await RuleSets(db).activate(Actor("test"), "transfer", parse_document(doc))
    assert (await client.post(MODELS, json=upload(), headers=admin_headers)).status == 201
    scorer = ModelCentreScorer(db, poll_seconds=3600.0)
    before = await scorer.active("transfer", shipped().name)
    assert (
        before is not None and before.version == shipped().meta["version"]
    )  # the shipped one, until activation
    resp = await client.post(
        f"{MODELS}/{shipped().name}/1/activate", json={"scene": "transfer"}, headers=admin_headers
    )
    assert resp.status == 200
    await scorer.refresh()  # what the background poll does within poll_seconds
    model = await scorer.active("transfer", shipped().name)
    assert model is not None and model.version == "1"
    assert await scorer.active("transfer", shipped().name) is model and scorer.loads == 2  # cached

    ctx = transfer("t_1", 120_000)
    engine = CelRiskEngine(db, SqlCounterStore(db), poll_seconds=0.0, scorer=scorer)
    decided = await engine.decide("transfer", ctx)
    assert decided.values["_engine"]["model"]["version"] == "1"
    assert any(r.rule == "model_says_yes" for r in decided.reasons)
    # a deadline no scoring can meet: the model's score is discarded, its rule not evaluated
    strict = CelRiskEngine(db, SqlCounterStore(db), poll_seconds=0.0, scorer=scorer, model_deadline=1e-9)
    late = await strict.decide("transfer", transfer("t_2", 120_000))
    assert "model" not in late.values.get("_engine", {})
    assert not any(r.rule == "model_says_yes" for r in late.reasons)
    assert strict.rule_stats[(late.ruleset_version, "model_says_yes")]["not_evaluated"] == 1


async def run(client: TestClient, headers: dict[str, str], tmp_path: Path, *args: str) -> Result:  # type: ignore[type-arg]
    from mpaas.cli.risk_models import models_group

    environ = {
        "MPAAS_SERVER": str(client.make_url("")).rstrip("/"),
        "MPAAS_TOKEN": headers["Authorization"].removeprefix("Bearer "),
        "MPAAS_CONFIG_HOME": str(tmp_path / "cfg"),
    }
    return await asyncio.to_thread(CliRunner().invoke, models_group, list(args), env=environ)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # about HTTP and the CLI, not SQL
async def test_the_cli_adds_lists_activates_and_shows(
    client: TestClient,  # type: ignore[type-arg]
    admin_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    artefact = tmp_path / "model.txt"
    artefact.write_bytes(shipped().artefact)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(shipped().meta))
    added = await run(client, admin_headers, tmp_path, "add", str(artefact), "--spec", str(spec))
    assert added.exit_code == 0, added.output
    assert f"registered {shipped().name}@1 (lightgbm, 15 features" in added.output
    activated = await run(client, admin_headers, tmp_path, "activate", shipped().name, "1")
    assert activated.exit_code == 0 and "activated transfer_default@1 for scene transfer" in activated.output
    listed = json.loads((await run(client, admin_headers, tmp_path, "list", "--json")).output)
    assert [(i["label"], i["active_in"]) for i in listed["items"]] == [("transfer_default@1", ["transfer"])]
    shown = json.loads(
        (await run(client, admin_headers, tmp_path, "show", shipped().name, "1", "--json")).output
    )
    assert shown["features"] == FEATURES and shown["calibration"] == shipped().meta["calibration"]
    missing = await run(client, admin_headers, tmp_path, "show", shipped().name, "9")
    assert missing.exit_code != 0 and "not found" in missing.output and "Traceback" not in missing.output
