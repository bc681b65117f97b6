"""Blob garbage collection: delete only blobs that nothing references.

Each domain contributes SQL queries that select the digests it references. A blob
is deleted when no query names it and it is older than ``grace``: a publish that is
still uploading has stored fresh blobs that no row references yet, and the grace
period keeps them. Deletion happens while holding the ``blobs`` maintenance lock,
which a publish also takes for its commit, after re-checking the blobs it reuses;
so a commit never references a blob that gc has just removed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiohttp import web

from mpaas.identity.audit import Actor, record
from mpaas.storage.blobs import BlobStore
from mpaas.storage.db import Database, utcnow
from mpaas.storage.locks import lock_row

DEFAULT_GRACE = timedelta(hours=1)
#: Other things gc clears, contributed by domains: called with (dry_run, grace), each
#: returns counts for the report (the packages domain: stale uploads and their files).
Sweeper = Callable[[bool, timedelta], Awaitable[dict[str, int]]]
GC_SWEEPERS: web.AppKey[list[Sweeper]] = web.AppKey("gc_sweepers", list)


@dataclass
class GcReport:
    scanned: int = 0
    referenced: int = 0
    recent: int = 0
    deleted: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    dry_run: bool = False
    swept: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scanned": self.scanned,
            "referenced": self.referenced,
            "kept_recent": self.recent,
            "deleted": len(self.deleted),
            "freed_bytes": self.freed_bytes,
            "dry_run": self.dry_run,
            "digests": self.deleted[:1000],
            **self.swept,
        }


async def collect_garbage(
    db: Database,
    blobs: BlobStore,
    reference_queries: Sequence[Any],
    actor: Actor,
    *,
    grace: timedelta = DEFAULT_GRACE,
    dry_run: bool = False,
    sweepers: Sequence[Sweeper] = (),
) -> GcReport:
    report = GcReport(dry_run=dry_run)
    for sweep in sweepers:
        for name, count in (await sweep(dry_run, grace)).items():
            report.swept[name] = report.swept.get(name, 0) + count
    cutoff = utcnow() - grace
    async with db.write() as s:
        await lock_row(s, "blobs")
        referenced: set[str] = set()
        for query in reference_queries:
            referenced.update(str(d) for d in (await s.exec(query)).all())
        async for blob in blobs.list_blobs():
            report.scanned += 1
            if blob.sha256 in referenced:
                report.referenced += 1
            elif blob.modified > cutoff:
                report.recent += 1
            else:
                report.deleted.append(blob.sha256)
                report.freed_bytes += blob.size
                if not dry_run:
                    await blobs.delete(blob.sha256)
        if not dry_run:
            record(
                s,
                actor,
                "blobs.gc",
                "blobs",
                detail={"deleted": len(report.deleted), "freed": report.freed_bytes, **report.swept},
            )
    return report
