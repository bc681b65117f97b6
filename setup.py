"""Builds the compiled update-check kernel; all other metadata lives in setup.cfg.

``mpaas.packages.releases.check_kernel`` is plain Python written in Cython's pure-Python mode
(ADR 0007). Here Cython compiles it to an extension module, which Python then imports
in place of the source. The extension is optional: without a C compiler, or with
``MPAAS_PURE_PYTHON=1``, the install still succeeds and the module runs as Python
(correct, only slower).

Cython compiles a copy of the source (under ``build/``) whose ``BUILT_FROM_SHA256`` line
carries the sha256 of the source itself, so the compiled module can tell, at import,
whether it is older than the ``.py`` beside it (see ``packages/releases/kernel_build.py``).
"""

import hashlib
import os
from pathlib import Path

from setuptools import Extension, setup

KERNEL_MODULE = "mpaas.packages.releases.check_kernel"
KERNEL_SOURCE = Path("packages/releases/check_kernel.py")
#: The line of the source that the stamped copy replaces (exactly once).
UNSTAMPED = b"BUILT_FROM_SHA256 = None\n"


def stamped_kernel_source() -> str:
    """Write the kernel source with its own sha256 in ``BUILT_FROM_SHA256``; return the copy's path."""
    source = KERNEL_SOURCE.read_bytes()
    if source.count(UNSTAMPED) != 1:
        raise SystemExit(f"{KERNEL_SOURCE} must contain the line {UNSTAMPED!r} exactly once")
    digest = hashlib.sha256(source).hexdigest()
    copy = Path("build") / "kernel-source" / "check_kernel.py"
    copy.parent.mkdir(parents=True, exist_ok=True)
    stamped = source.replace(UNSTAMPED, f'BUILT_FROM_SHA256 = "{digest}"\n'.encode())
    if not copy.exists() or copy.read_bytes() != stamped:  # unchanged: Cython need not run again
        tmp = copy.with_suffix(".tmp")
        tmp.write_bytes(stamped)
        tmp.replace(copy)
    return str(copy)


def extensions() -> list[Extension]:
    if os.environ.get("MPAAS_PURE_PYTHON") == "1":
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:  # a build without Cython (it is in pyproject's build requirements)
        return []
    kernel = Extension(KERNEL_MODULE, [stamped_kernel_source()], optional=True)
    return cythonize([kernel], language_level=3, quiet=True)


setup(ext_modules=extensions())
