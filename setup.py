"""Builds the compiled update-check kernel; all other metadata lives in setup.cfg.

``mpaas.packages.releases.check_kernel`` is plain Python written in Cython's pure-Python mode
(ADR 0007). Here Cython compiles it to an extension module, which Python then imports
in place of the source. The extension is optional: without a C compiler, or with
``MPAAS_PURE_PYTHON=1``, the install still succeeds and the module runs as Python
(correct, only slower).
"""

import os

from setuptools import Extension, setup

KERNEL = Extension(
    "mpaas.packages.releases.check_kernel", ["packages/releases/check_kernel.py"], optional=True
)


def extensions() -> list[Extension]:
    if os.environ.get("MPAAS_PURE_PYTHON") == "1":
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:  # a build without Cython (it is in pyproject's build requirements)
        return []
    return cythonize([KERNEL], language_level=3, quiet=True)


setup(ext_modules=extensions())
