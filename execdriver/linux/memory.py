"""Which pages a process wrote since its fork, and writing them ahead in the next one.

A clone shares its parent's pages until one of the two writes one; that
first write copies the page (3.2 us on this machine). A warm sandbox
(native/pool.py) copied some twenty pages of the fork server's between its
go and its exec, while its container waited: the Python code of those last
steps touches them. The pages are the same in every sandbox of a pool (each
is a clone of the same server), so a pool learns them from one sandbox,
which reports just before it execs what it holds alone (``written_ranges``),
and every later sandbox writes them ahead (``populate``) while it is idle.
A page learned but not needed costs a copy while idle; a range unmapped
since is skipped.

Ranges travel as bytes: (start, length) pairs of native 64-bit integers.
"""

from __future__ import annotations

import os
import sys

from execdriver.linux import ffi
from execdriver.linux.syscalls import _libc

_madvise = _libc.madvise
_madvise.argtypes = (ffi.c_ulong, ffi.c_size_t, ffi.c_int)
_MADV_POPULATE_WRITE = 23  # Linux 5.14; older kernels refuse it, and nothing is written ahead
_PAGE_SHIFT = 12
_PRESENT = 1 << 63
_EXCLUSIVE = 1 << 56  # /proc/<pid>/pagemap: mapped by this process alone (Linux 4.2)


def populate(ranges: bytes) -> None:
    """Write-fault every page of ``ranges`` now (their content is unchanged); failures are skipped."""
    pairs = memoryview(ranges).cast("Q")
    for index in range(0, len(pairs) - 1, 2):
        _madvise(pairs[index], pairs[index + 1], _MADV_POPULATE_WRITE)


def written_ranges() -> bytes:
    """The private writable memory this process holds alone: what it wrote since its fork."""
    regions = []
    with open("/proc/self/maps", "rb") as maps:
        for line in maps:
            fields = line.split()
            if fields[1].startswith(b"rw") and fields[1].endswith(b"p"):
                low, high = (int(bound, 16) for bound in fields[0].split(b"-"))
                regions.append((low, high))
    found: list[int] = []
    fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for low, high in regions:
            entries = memoryview(os.pread(fd, ((high - low) >> _PAGE_SHIFT) * 8, (low >> _PAGE_SHIFT) * 8))
            start = -1
            for index, entry in enumerate(entries.cast("Q")):
                mine = entry & _PRESENT and entry & _EXCLUSIVE
                if mine and start < 0:
                    start = index
                elif not mine and start >= 0:
                    found += (low + (start << _PAGE_SHIFT), (index - start) << _PAGE_SHIFT)
                    start = -1
            if start >= 0:
                found += (low + (start << _PAGE_SHIFT), ((len(entries) >> 3) - start) << _PAGE_SHIFT)
    finally:
        os.close(fd)
    return b"".join(number.to_bytes(8, sys.byteorder) for number in found)
