"""nftables through libnftables, the library behind the ``nft`` command.

The host need not have the ``nft`` program: its library (Debian's
libnftables1, which iptables-nft also pulls in) takes the same commands as
text, in-process, so a rule change costs a netlink round trip, not an exec.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading


class NetfilterError(OSError):
    """nftables refused a command; the message is nft's own."""


class _Library:
    def __init__(self) -> None:
        name = ctypes.util.find_library("nftables") or "libnftables.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError as err:
            raise NetfilterError(f"nftables: cannot load libnftables ({err}); install libnftables1") from None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = (ctypes.c_uint32,)
        lib.nft_ctx_buffer_output.argtypes = (ctypes.c_void_p,)
        lib.nft_ctx_buffer_error.argtypes = (ctypes.c_void_p,)
        lib.nft_ctx_get_output_buffer.argtypes = (ctypes.c_void_p,)
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = (ctypes.c_void_p,)
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = (ctypes.c_void_p, ctypes.c_char_p)
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        self.lib = lib
        self.ctx = lib.nft_ctx_new(0)
        lib.nft_ctx_buffer_output(self.ctx)
        lib.nft_ctx_buffer_error(self.ctx)
        self.lock = threading.Lock()  # one context, whose buffers each call reads back


_library: _Library | None = None


def run(commands: str) -> str:
    """Run ``commands`` (nft syntax, one transaction); nft's output, or NetfilterError."""
    global _library
    if _library is None:
        _library = _Library()
    lib = _library.lib
    with _library.lock:
        code = lib.nft_run_cmd_from_buffer(_library.ctx, commands.encode())
        output = (lib.nft_ctx_get_output_buffer(_library.ctx) or b"").decode(errors="replace")
        error = (lib.nft_ctx_get_error_buffer(_library.ctx) or b"").decode(errors="replace")
    if code != 0:
        first = next((line for line in error.splitlines() if line.startswith("Error:")), error.strip())
        raise NetfilterError(first.removeprefix("Error: ") or "nftables refused the command")
    return output
