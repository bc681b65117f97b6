"""Which source the compiled update-check kernel was built from, and what to do when it is stale.

``setup.py`` compiles :mod:`mpaas.packages.releases.check_kernel` from a copy of its source
with ``BUILT_FROM_SHA256`` set to that source's sha256. The extension is optional and built
in place, so a failed or forgotten rebuild leaves an older ``.so`` beside a newer ``.py``,
and Python imports the ``.so``. At import, the compiled module calls
:func:`use_current_source`: when the digest it carries is not the digest of the source
beside it, the pure-Python module is loaded from that source in its place, with a warning
in the log (a stale kernel would answer update checks with old code). The test suite fails
on it (tests/packages/releases/test_releases_kernel.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType

log = logging.getLogger("mpaas.packages.releases.kernel")

#: The source file of the kernel, beside its compiled module.
SOURCE_NAME = "check_kernel.py"


def source_sha256(path: Path) -> str:
    """The sha256 (hex) of the kernel source file, as ``setup.py`` computes it."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stale_reason(module_file: str, built_from: str | None) -> str | None:
    """Why a compiled module from ``module_file`` does not match the source beside it; None if it does.

    Without a source beside it (an install that ships only the extension) there is nothing
    to compare, and the build is trusted.
    """
    source = Path(module_file).with_name(SOURCE_NAME)
    if not source.is_file():
        return None
    current = source_sha256(source)
    if built_from == current:
        return None
    built = built_from or "an unrecorded source"
    return (
        f"the compiled update-check kernel {Path(module_file).name} was built from {built}, "
        f"but {source} has sha256 {current}; rebuild it (pip install -e .)"
    )


def use_current_source(module_name: str, module_file: str, built_from: str | None) -> ModuleType | None:
    """Called by the compiled kernel at import: put the pure module in its place if it is stale.

    Returns the pure module installed in ``sys.modules[module_name]`` (its ``STALE_BUILD``
    says why), or None when the compiled module matches its source and stays.
    """
    reason = stale_reason(module_file, built_from)
    if reason is None:
        return None
    log.warning("%s; using the pure-Python kernel meanwhile", reason)
    source = Path(module_file).with_name(SOURCE_NAME)
    spec = importlib.util.spec_from_file_location(module_name, source)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py path always has a loader
        raise ImportError(reason)
    pure = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(module_name)
    sys.modules[module_name] = pure
    try:
        spec.loader.exec_module(pure)
    except BaseException:
        if previous is not None:
            sys.modules[module_name] = previous
        raise
    pure.STALE_BUILD = reason  # type: ignore[attr-defined]
    return pure
