"""The model centre's service: register immutable model versions, activate one per scene
(only when its features are exactly what the scene's active rule set feeds it), and the
model mpaas ships (``default_model.*``, used until a version is activated).

Registering validates by loading: an artefact the runtime cannot load, or whose feature
count differs from the declared schema, is refused before anything is stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

import mpaas.banking.epochs as epochs
from mpaas.banking.risk.modelcentre.errors import InvalidModel, ModelNotFound, SchemaMismatch
from mpaas.banking.risk.modelcentre.models import RiskModel, RiskModelActivation
from mpaas.banking.risk.modelcentre.runtime import (
    FORMATS,
    LoadedModel,
    make_predictor,
    parse_calibration,
)
from mpaas.banking.risk.rules import FEATURE_PATH_RE, NAME_RE
from mpaas.banking.risk.store import EPOCH, RuleSets, check_scene
from mpaas.errors import Conflict
from mpaas.identity import audit
from mpaas.identity.audit import Actor
from mpaas.storage.db import Database, utcnow

MAX_ARTEFACT = 8 << 20
MAX_FEATURES = 200
MAX_DESCRIPTION = 512


def model_label(name: str, version: int | str) -> str:
    return f"{name}@{version}"


def check_name(name: Any) -> str:
    if not isinstance(name, str) or re.fullmatch(NAME_RE, name) is None:
        raise InvalidModel(f"a model name must match {NAME_RE}")
    return name


def check_features(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list | tuple) or not 1 <= len(raw) <= MAX_FEATURES:
        raise InvalidModel(f"features must be a list of 1 to {MAX_FEATURES} context paths")
    for path in raw:
        if not isinstance(path, str) or re.fullmatch(FEATURE_PATH_RE, path) is None:
            raise InvalidModel(f"feature {path!r} must be a context path such as vel.user.count_1h")
    if len(set(raw)) != len(raw):
        raise InvalidModel("features list a path twice")
    return tuple(raw)


def load(row: RiskModel) -> LoadedModel:
    """A stored version in memory (checks the artefact's sha256 first)."""
    if hashlib.sha256(row.artefact).hexdigest() != row.sha256:
        raise InvalidModel(f"model {model_label(row.name, row.version)}: artefact does not match its sha256")
    return LoadedModel(
        row.name,
        str(row.version),
        tuple(row.features),
        make_predictor(row.format, row.artefact),
        parse_calibration(row.calibration),
    )


@dataclass(frozen=True)
class Shipped:
    """The model in the package: its metadata (``default_model.json``) and artefact."""

    meta: dict[str, Any]
    artefact: bytes

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    def model(self) -> LoadedModel:
        return LoadedModel(
            self.name,
            str(self.meta["version"]),
            tuple(self.meta["features"]),
            make_predictor(self.meta["format"], self.artefact),
            parse_calibration(self.meta["calibration"]),
        )


@cache
def shipped() -> Shipped:
    files = resources.files("mpaas.banking.risk.modelcentre")
    meta = json.loads(files.joinpath("default_model.json").read_text())
    return Shipped(meta, files.joinpath("default_model.txt").read_bytes())


def shipped_onnx() -> bytes:
    """The shipped model converted to ONNX by the training script (same trees, float32)."""
    return resources.files("mpaas.banking.risk.modelcentre").joinpath("default_model.onnx").read_bytes()


class ModelRegistry:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(
        self,
        actor: Actor,
        name: str,
        fmt: str,
        artefact: bytes,
        features: Any,
        calibration: Any = None,
        description: str = "",
    ) -> RiskModel:
        check_name(name)
        if fmt not in FORMATS:
            raise InvalidModel(f"format must be one of {', '.join(FORMATS)}")
        if not 0 < len(artefact) <= MAX_ARTEFACT:
            raise InvalidModel(f"the artefact must be 1 byte to {MAX_ARTEFACT >> 20} MiB")
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            raise InvalidModel(f"description must be at most {MAX_DESCRIPTION} characters")
        paths = check_features(features)
        calib = parse_calibration(calibration)
        # load it (off the event loop: an ONNX session takes a while to build), or refuse it
        predictor = await asyncio.to_thread(make_predictor, fmt, artefact)
        LoadedModel(name, "check", paths, predictor, calib)
        digest = hashlib.sha256(artefact).hexdigest()
        try:
            async with self.db.write() as s:
                latest = (
                    await s.exec(select(func.max(RiskModel.version)).where(RiskModel.name == name))
                ).first()
                row = RiskModel(
                    name=name,
                    version=(latest or 0) + 1,
                    format=fmt,
                    features=list(paths),
                    calibration=calib.to_dict(),
                    description=description,
                    sha256=digest,
                    size=len(artefact),
                    artefact=artefact,
                    created_by=actor.name,
                )
                s.add(row)
                audit.record(
                    s,
                    actor,
                    "risk.model.add",
                    model_label(name, row.version),
                    detail={"format": fmt, "sha256": digest, "features": len(paths)},
                )
        except IntegrityError:
            raise Conflict("another version of this model was added at the same time; try again") from None
        return row

    async def versions(
        self, name: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[RiskModel], int]:
        query = select(RiskModel)
        count = select(func.count()).select_from(RiskModel)
        if name is not None:
            query, count = query.where(RiskModel.name == name), count.where(col(RiskModel.name) == name)
        query = query.order_by(col(RiskModel.name), col(RiskModel.version).desc()).limit(limit).offset(offset)
        async with self.db.session() as s:
            rows = list((await s.exec(query)).all())
            total = int((await s.exec(count)).one())
        return rows, total

    async def get(self, name: str, version: int) -> RiskModel:
        async with self.db.session() as s:
            row = (
                await s.exec(select(RiskModel).where(RiskModel.name == name, RiskModel.version == version))
            ).first()
        if row is None:
            raise ModelNotFound(f"model {model_label(name, version)} not found")
        return row

    async def activations(self, name: str | None = None) -> list[RiskModelActivation]:
        query = select(RiskModelActivation).order_by(
            col(RiskModelActivation.scene), col(RiskModelActivation.name)
        )
        if name is not None:
            query = query.where(RiskModelActivation.name == name)
        async with self.db.session() as s:
            return list((await s.exec(query)).all())

    async def activation(self, scene: str, name: str) -> RiskModelActivation | None:
        async with self.db.session() as s:
            return await s.get(RiskModelActivation, (scene, name))

    async def check_schema(self, scene: str, row: RiskModel) -> None:
        """Refuse unless the scene's active rule set names this model with exactly its features."""
        active = await RuleSets(self.db).active(scene)
        spec = getattr(active.doc, "model", None) if active is not None else None
        label = model_label(row.name, row.version)
        if spec is None:
            raise SchemaMismatch(
                f"the active rule set of scene {scene!r} uses no model; activate a rule set whose "
                f"model section names {row.name!r} first"
            )
        if spec.name != row.name:
            raise SchemaMismatch(
                f"the active rule set of scene {scene!r} uses model {spec.name!r}, not {row.name!r}"
            )
        wanted, has = tuple(spec.features), tuple(row.features)
        if wanted != has:
            missing = [f for f in wanted if f not in has]
            extra = [f for f in has if f not in wanted]
            detail = []
            if missing:
                detail.append("missing " + ", ".join(missing))
            if extra:
                detail.append("not fed by the rule set " + ", ".join(extra))
            if not detail:
                detail.append("same features in another order")
            raise SchemaMismatch(
                f"{label} does not match the features of the active rule set of scene {scene!r}: "
                + "; ".join(detail)
            )

    async def activate(self, actor: Actor, scene: str, name: str, version: int) -> RiskModelActivation:
        check_scene(scene)
        row = await self.get(check_name(name), version)
        await self.check_schema(scene, row)
        async with self.db.write() as s:
            current = await s.get(RiskModelActivation, (scene, name))
            previous = current.version if current is not None else None
            if current is None:
                current = RiskModelActivation(
                    scene=scene, name=name, version=version, activated_by=actor.name
                )
            else:
                current.version, current.activated_by, current.activated_at = version, actor.name, utcnow()
            s.add(current)
            audit.record(
                s,
                actor,
                "risk.model.activate",
                model_label(name, version),
                detail={"scene": scene, "previous": previous, "sha256": row.sha256},
            )
            await epochs.bump(s, EPOCH)
        return current
