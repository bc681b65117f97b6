"""The current state of one app's TUF repository, loaded from a :class:`MetadataStore`.

The timestamp is read first: every change commits timestamp ``latest + 1``, so a change
computed on this state fails with ``VersionConflict`` if anyone committed after the
read, and its author reloads (see :mod:`mpaas.signing.tuf_repo`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, Targets, Timestamp
from tuf.api.serialization import DeserializationError

from mpaas.signing.errors import RepositoryNotFound, SigningError
from mpaas.signing.targets import HASH_ALGORITHM
from mpaas.signing.tuf_root import ROOT, SNAPSHOT, TARGETS, TIMESTAMP, parse_root
from mpaas.signing.tuf_store import MetadataStore, metadata_filename

_M = TypeVar("_M", Root, Targets, Snapshot, Timestamp)


@dataclass(slots=True)
class RepoState:
    """The latest metadata of the four top-level roles, as one consistent set."""

    root: Metadata[Root]
    targets: Metadata[Targets]
    snapshot: Metadata[Snapshot]
    timestamp: Metadata[Timestamp]


def parse_stored(raw: bytes, kind: type[_M], what: str) -> Metadata[_M]:
    try:
        md = Metadata[_M].from_bytes(raw)
    except DeserializationError as exc:
        raise SigningError(f"stored {what} is not valid metadata: {exc}") from None
    if not isinstance(md.signed, kind):
        raise SigningError(f"stored {what} holds {md.signed.type} metadata")
    return md


def meta_file(version: int, raw: bytes) -> MetaFile:
    """Snapshot/timestamp meta entry with length and hash, as clients check them."""
    return MetaFile.from_data(version, raw, [HASH_ALGORITHM])


async def load_state(store: MetadataStore, app: str) -> RepoState:
    """The latest consistent metadata of ``app``; RepositoryNotFound if it has none."""
    # The timestamp first: any commit after this read takes timestamp version + 1,
    # so our own commit of that version fails and we retry on fresh state.
    timestamp_raw = await store.load_latest(app, TIMESTAMP)
    if timestamp_raw is None:
        raise RepositoryNotFound(f"{app} has no TUF repository")
    root_raw = await store.load_latest(app, ROOT)
    timestamp = parse_stored(timestamp_raw, Timestamp, "timestamp")
    snapshot_name = metadata_filename(SNAPSHOT, timestamp.signed.snapshot_meta.version)
    snapshot_raw = await store.get(app, snapshot_name)
    if root_raw is None or snapshot_raw is None:
        raise SigningError(f"{app}: TUF repository is incomplete ({snapshot_name} or root missing)")
    snapshot = parse_stored(snapshot_raw, Snapshot, snapshot_name)
    targets_meta = snapshot.signed.meta.get("targets.json")
    if targets_meta is None:
        raise SigningError(f"{app}: {snapshot_name} lists no targets.json")
    targets_name = metadata_filename(TARGETS, targets_meta.version)
    targets_raw = await store.get(app, targets_name)
    if targets_raw is None:
        raise SigningError(f"{app}: TUF repository is incomplete ({targets_name} missing)")
    return RepoState(
        root=parse_root(root_raw),
        targets=parse_stored(targets_raw, Targets, targets_name),
        snapshot=snapshot,
        timestamp=timestamp,
    )
