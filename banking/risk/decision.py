"""The risk decision contract: what a caller (the transfers service) hands the engine and gets back.

The engine behind it (CEL rules, lists, velocity counters, a model score) may change; this
contract does not. A decision is stored with the values it read, so it can be replayed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from mpaas.banking.risk.counters import Reservation

Action = Literal["allow", "challenge", "review", "deny"]
ACTIONS: tuple[Action, ...] = ("allow", "challenge", "review", "deny")


@dataclass(frozen=True)
class Reason:
    """One rule that hit: its name, what it added to the score, and a sentence for people."""

    rule: str
    weight: float
    message: str


@dataclass(frozen=True)
class RiskContext:
    """What a scene is decided on. ``txn`` for a transfer holds at least ``id``, ``amount``
    (fen, int), ``currency``, ``from_account``, ``to_account``, ``counterparty``,
    ``external`` (bool); ``user`` holds ``id`` and ``tier``; ``device`` holds ``id``,
    ``model``, ``rooted``, ``first_seen_days``; ``net`` holds ``ip`` and ``carrier``;
    ``geo`` holds ``lat``, ``lon``, ``region`` when known."""

    txn: Mapping[str, Any] = field(default_factory=dict)
    user: Mapping[str, Any] = field(default_factory=dict)
    device: Mapping[str, Any] = field(default_factory=dict)
    net: Mapping[str, Any] = field(default_factory=dict)
    geo: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    id: str
    action: Action
    score: float
    reasons: tuple[Reason, ...]
    ruleset_version: str
    values: Mapping[str, Any]
    #: The decision's record when the caller asked to store it in its own transaction
    #: (``CelRiskEngine.decide(..., defer=True)``, an ``allow`` only); None once stored.
    record: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    #: The transaction as the velocity counters counted it when an ``allow`` was decided with
    #: ``count=True``: the caller gives it back (``release``) if the transaction does not commit.
    reservation: Reservation | None = field(default=None, compare=False, repr=False)


class RiskEngine(Protocol):
    async def decide(self, scene: str, context: RiskContext) -> Decision:
        """Decide and store the decision (with every value read) before answering."""
        ...

    async def committed(self, scene: str, context: RiskContext) -> None:
        """Tell the engine the transaction committed, so velocity counters see it."""
        ...


# -- the model centre's side of the contract (issue 19) ----------------------------------
#
# A rule set may name a model in its document: ``model: {name, weight, features: [paths]}``,
# where each path is a dotted path into the decision context (``txn.amount``,
# ``vel.user.count_1h``, ``device.rooted``). The engine fetches those paths with the rules'
# own, asks the scorer for the scene's active model, scores (in-process, with a deadline),
# exposes ``model.score`` (0..1, calibrated) and ``model.version`` to the rules, and adds
# ``weight * model.score`` to the score. A model whose feature list differs from the rule
# set's ``model.features`` refuses to activate. A model that times out or fails leaves
# ``model`` unset (rules reading it are "not evaluated") and the scene's fail mode applies.


class ActiveModel(Protocol):
    """One activated, versioned scoring model, loaded in memory."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def features(self) -> tuple[str, ...]:
        """Dotted context paths, in the order :meth:`score` takes their values."""
        ...

    def score(self, values: Sequence[float | None]) -> float:
        """The calibrated probability of fraud for one row (``None`` is a missing value)."""
        ...


class ModelScorer(Protocol):
    async def active(self, scene: str, name: str) -> ActiveModel | None:
        """The model ``name`` active for ``scene`` (cached; reloaded when the risk epoch moves)."""
        ...


class DefersRecords(Protocol):
    """An engine that hands an ``allow``'s record back (``decide(..., defer=True)``) for the
    caller to write in the transaction it allows, and stores it alone when that fails."""

    defers_records: bool

    async def decide(self, scene: str, context: RiskContext, *, defer: bool = False) -> Decision: ...

    async def store_record(self, decision: Decision) -> None: ...


class CountsOnDecide(Protocol):
    """An engine that counts a transaction in its velocity windows when it decides it
    (``decide(..., count=True)``), so that transactions decided at the same moment see each
    other; an ``allow``'s count is the caller's to give back (``release``) when the
    transaction does not commit, and ``committed()`` is then not needed."""

    counts_on_decide: bool

    async def decide(
        self, scene: str, context: RiskContext, *, defer: bool = False, count: bool = False
    ) -> Decision: ...

    async def release(self, decision: Decision) -> None: ...
