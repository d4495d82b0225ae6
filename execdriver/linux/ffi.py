"""The C types and library calls the kernel modules need, built on ``_ctypes`` alone.

Importing the ctypes package costs 2-3 ms here (it builds dozens of classes
and loads libpython's symbols), a tenth of a whole CLI command, and every
command needs a few libc calls. The C core, ``_ctypes``, costs 0.3 ms: this
module defines over it just the types and the loader that syscalls.py,
capabilities.py and seccomp.py use. They behave as their ctypes namesakes
(the type checker sees ctypes' own), so code can move between the two.
"""

from __future__ import annotations

import _ctypes
from _ctypes import POINTER, Structure, addressof, byref, get_errno, pointer, sizeof

TYPE_CHECKING = False  # the typing module would cost more than ctypes

__all__ = [
    "POINTER", "Library", "Structure", "addressof", "byref", "c_byte", "c_char", "c_char_p", "c_int",
    "c_long", "c_short", "c_size_t", "c_uint", "c_uint32", "c_uint64", "c_ulong", "c_ushort", "c_void_p",
    "get_errno", "pointer", "sizeof",
]

if TYPE_CHECKING:
    from ctypes import (
        c_byte,
        c_char,
        c_char_p,
        c_int,
        c_long,
        c_short,
        c_size_t,
        c_uint,
        c_uint32,
        c_uint64,
        c_ulong,
        c_ushort,
        c_void_p,
    )
    from typing import Any
else:
    from _ctypes import _SimpleCData

    def _simple(name: str, code: str) -> type:
        """A simple C type: ``code`` is its struct-module code, as ctypes gives it on Linux (LP64)."""
        return type(name, (_SimpleCData,), {"_type_": code})

    c_byte = _simple("c_byte", "b")
    c_char = _simple("c_char", "c")
    c_short = _simple("c_short", "h")
    c_ushort = _simple("c_ushort", "H")
    c_int = _simple("c_int", "i")
    c_uint = _simple("c_uint", "I")
    c_long = _simple("c_long", "l")
    c_ulong = _simple("c_ulong", "L")
    c_char_p = _simple("c_char_p", "z")
    c_void_p = _simple("c_void_p", "P")
    c_uint32 = c_uint
    c_uint64 = c_size_t = c_ulong


class _Function(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_int


class _FunctionKeepingGil(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO | _ctypes.FUNCFLAG_PYTHONAPI
    _restype_ = c_int


class Library:
    """A shared library (None: the process's own symbols, libc's among them).

    Its attributes are its functions, returning a C int by default, with
    errno saved for get_errno(), as ``ctypes.CDLL(name, use_errno=True)``.
    ``keep_gil`` holds the GIL across calls, as ``ctypes.PyDLL`` does.
    """

    def __init__(self, name: str | None, keep_gil: bool = False) -> None:
        # None opens the program itself; the stubs know only paths.
        self._handle = _ctypes.dlopen(name, 0)  # type: ignore[arg-type]  # RTLD_LOCAL; C adds RTLD_NOW
        self._kind = _FunctionKeepingGil if keep_gil else _Function

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        function = self._kind((name, self))  # type: ignore[arg-type]  # it reads self._handle, as of a CDLL
        setattr(self, name, function)
        return function

