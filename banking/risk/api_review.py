"""Four-eyes steps of rule sets: submit, approve, activate, diff and history."""

from __future__ import annotations

from aiohttp import web

from mpaas.appkeys import DB
from mpaas.banking.risk.api_base import READERS, SCENE_SCHEMA, VERSION_SCHEMA, WRITERS, api
from mpaas.banking.risk.review import Review, diff
from mpaas.banking.risk.store import RuleSets, check_scene
from mpaas.identity.guard import actor_of
from mpaas.web.api import json_response, parse_int

RULESET = "/api/v1/risk/rulesets/{scene}/{version}"
PARAMS = {"scene": SCENE_SCHEMA, "version": VERSION_SCHEMA}


def _target(request: web.Request, name: str = "version") -> tuple[str, int]:
    scene = check_scene(request.match_info["scene"])
    return scene, parse_int(request.match_info[name], name, minimum=1, maximum=10**9)


def _step(action: str, summary: str) -> None:
    @api.route(
        "POST",
        f"{RULESET}/{action}",
        summary=summary,
        tag="risk",
        roles=WRITERS,
        params=PARAMS,
        responses={200: "moved", 403: "four_eyes", 404: "ruleset_not_found", 409: "invalid_review"},
    )
    async def step(request: web.Request) -> web.Response:
        from mpaas.banking.risk.api import ruleset_dict

        scene, version = _target(request)
        row = await getattr(Review(request.app[DB]), action)(actor_of(request), scene, version)
        return json_response(ruleset_dict(row))

    step.__name__ = f"{action}_ruleset"


_step("submit", "Submit a draft rule set for review")
_step("approve", "Approve a rule set in review (not by its submitter)")
_step("activate", "Activate an approved rule set (not by its submitter); the scene's active one retires")


@api.route(
    "GET",
    RULESET + "/diff/{other}",
    summary="What changed from one rule set version to another",
    tag="risk",
    roles=READERS,
    params={**PARAMS, "other": VERSION_SCHEMA},
)
async def diff_rulesets(request: web.Request) -> web.Response:
    scene, version = _target(request)
    _, other = _target(request, "other")
    rulesets = RuleSets(request.app[DB])
    old, new = await rulesets.get(scene, version), await rulesets.get(scene, other)
    return json_response({"from": version, "to": other, **diff(old.document, new.document)})


@api.route(
    "GET",
    RULESET + "/history",
    summary="The audit entries of one rule set version, oldest first",
    tag="risk",
    roles=READERS,
    params=PARAMS,
)
async def ruleset_history(request: web.Request) -> web.Response:
    scene, version = _target(request)
    await RuleSets(request.app[DB]).get(scene, version)
    rows = await Review(request.app[DB]).history(scene, version)
    items = [{"at": r.at, "actor": r.actor, "action": r.action, "detail": r.detail} for r in rows]
    return json_response({"items": items})
