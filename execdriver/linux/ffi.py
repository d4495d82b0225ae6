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

    # The struct-module codes ctypes gives these types on Linux (LP64).
    class c_byte(_SimpleCData):
        _type_ = "b"

    class c_char(_SimpleCData):
        _type_ = "c"

    class c_short(_SimpleCData):
        _type_ = "h"

    class c_ushort(_SimpleCData):
        _type_ = "H"

    class c_int(_SimpleCData):
        _type_ = "i"

    class c_uint(_SimpleCData):
        _type_ = "I"

    class c_long(_SimpleCData):
        _type_ = "l"

    class c_ulong(_SimpleCData):
        _type_ = "L"

    class c_char_p(_SimpleCData):
        _type_ = "z"

    class c_void_p(_SimpleCData):
        _type_ = "P"

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

