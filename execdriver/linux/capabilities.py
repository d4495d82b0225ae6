"""The capabilities a container's process keeps.

Root in a container is not root on the host: every capability outside the
kept set leaves the bounding set (so no exec can regain it), and the
process's own sets are cut to it. The default is Docker's set, CAP_MKNOD
included: a container may make any node, and its devices cgroup (v1's
files, v2's eBPF program) decides which it may open.
"""

from __future__ import annotations

import os

from execdriver.linux import ffi
from execdriver.linux.syscalls import _fail, _libc

NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
NUMBERS = {name: number for number, name in enumerate(NAMES)}

# Docker's default set.
DEFAULT = tuple(NUMBERS[name] for name in (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
))

def adjust(base: list[int] | tuple[int, ...], add: list[str] | None, drop: list[str] | None,
           where: str = "") -> list[int]:
    """``base`` with Docker's cap_add and cap_drop: names with or without CAP_, or ALL.

    As Docker does, ALL in cap_drop empties the set before cap_add applies,
    and ALL in cap_add keeps every capability not dropped.
    """
    from execdriver.errors import ConfigError

    def numbers(names: list[str] | None, field: str) -> set[int] | None:
        result: set[int] = set()
        for index, name in enumerate(names or ()):
            upper = name.upper()
            if upper == "ALL":
                return None
            number = NUMBERS.get(upper if upper.startswith("CAP_") else f"CAP_{upper}")
            if number is None:
                raise ConfigError(f"{where}{field}[{index}]: unknown capability {name!r}")
            result.add(number)
        return result

    everything = set(range(min(last_cap(), len(NAMES) - 1) + 1))
    added, dropped = numbers(add, "cap_add"), numbers(drop, "cap_drop")
    kept = set() if dropped is None else set(base) - dropped
    kept |= everything - (dropped or set()) if added is None else added
    return sorted(kept)


_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_VERSION_3 = 0x20080522


class _Header(ffi.Structure):
    _fields_ = (("version", ffi.c_uint32), ("pid", ffi.c_int))


class _Data(ffi.Structure):
    _fields_ = (("effective", ffi.c_uint32), ("permitted", ffi.c_uint32), ("inheritable", ffi.c_uint32))


_DataPair = _Data * 2  # the C array type made once, at import, not in each init


_last_cap: list[int] = []


def last_cap() -> int:
    """The highest capability number this kernel knows (read once)."""
    if not _last_cap:
        try:
            with open("/proc/sys/kernel/cap_last_cap", encoding="utf-8") as handle:
                _last_cap.append(int(handle.read()))
        except OSError:
            _last_cap.append(len(NAMES) - 1)
    return _last_cap[0]


def available() -> list[int]:
    """The capabilities this process can pass on: all it holds (permitted), as root; without
    privileges, its bounding set, which root of a user namespace of its own has there.

    Privileged containers get these; a host that runs us without some
    capability cannot give it to a container either.
    """
    wanted = "CapPrm:" if os.geteuid() == 0 else "CapBnd:"
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(wanted):
                mask = int(line.split()[1], 16)
                return [cap for cap in range(mask.bit_length()) if mask >> cap & 1]
    return []


def drop_bounding(keep: list[int], last: int) -> None:
    """Remove every capability outside ``keep`` from the bounding set."""
    kept = set(keep)
    for cap in range(last + 1):
        if cap not in kept and _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise _fail(f"dropping {NAMES[cap] if cap < len(NAMES) else cap}")
    _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)


def _mask(caps: list[int]) -> int:
    mask = 0
    for cap in caps:
        mask |= 1 << cap
    return mask


def set_process(permitted: list[int], effective: list[int] | None = None,
                inheritable: list[int] | None = None) -> None:
    """Set the process's sets; effective defaults to permitted, inheritable to empty.

    Never an inheritable capability unless asked for (CVE-2022-29162).
    """
    perm, eff, inh = _mask(permitted), _mask(permitted if effective is None else effective), _mask(inheritable or [])
    data = _DataPair(
        _Data(eff & 0xFFFFFFFF, perm & 0xFFFFFFFF, inh & 0xFFFFFFFF),
        _Data(eff >> 32, perm >> 32, inh >> 32),
    )
    if _libc.capset(ffi.byref(_Header(_VERSION_3, 0)), data) != 0:
        raise _fail("capset")


def raise_ambient(cap: int) -> None:
    if _libc.prctl(_PR_CAP_AMBIENT, 2, cap, 0, 0) != 0:  # PR_CAP_AMBIENT_RAISE
        raise _fail(f"raising ambient {NAMES[cap] if cap < len(NAMES) else cap}")
