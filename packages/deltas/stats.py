"""What changed between two manifests, for `mpaas diff --stats` (no bytes are read)."""

from __future__ import annotations

from typing import Any

from mpaas.packages.deltas.builder import plan_ops
from mpaas.packages.deltas.header import PatchStats
from mpaas.packages.manifest import Manifest


def manifest_diff(old: Manifest, new: Manifest) -> dict[str, Any]:
    ops = plan_ops(old, new)
    return {
        "summary": PatchStats.of(ops, old, new).to_json(),
        "files": [{"op": op.kind.value, "path": op.path, "from": op.base, "size": op.size} for op in ops],
    }
