"""The few names of Cython's pure-Python mode that :mod:`check_kernel` uses, as no-ops.

Only imported where Cython is not installed; the module then runs as plain Python.
"""

import builtins
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

compiled = False
NULL = None

# The C types, as the Python types that stand for them when nothing is compiled.
int: type = builtins.int
double: type = float
bint: type = bool
ulonglong: type = builtins.int
longlong: type = builtins.int
uchar: type = builtins.int
Py_ssize_t: type = builtins.int
p_uchar: type = bytes
void = None


def _identity(obj: T) -> T:
    return obj


cclass = cfunc = ccall = inline = _identity


def exceptval(*_args: Any, **_kwargs: Any) -> Callable[[T], T]:
    return _identity


def declare(_type: Any = None, value: Any = None, **_kwargs: Any) -> Any:
    return value


def cast(_type: Any, value: T) -> T:
    return value
