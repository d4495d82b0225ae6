"""cgroups: one interface, one manager per cgroup version.

:func:`manager` picks the manager for what the host has: v2 where
/sys/fs/cgroup is the unified hierarchy, v1 where the controllers are
mounted one by one (legacy and hybrid hosts; on a hybrid host the v1
controllers are used, as runc and crun do). A container's cgroup is named by
one path relative to the root of each hierarchy, e.g. ``execdriver/<id>``,
or ``/docker/<id>`` when an engine chooses it.
"""

from __future__ import annotations

import os

from execdriver.errors import ConfigError, ExecDriverError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from execdriver.linux.cgroups.base import Accounting, Manager

ROOT = "/sys/fs/cgroup"


class CgroupError(ExecDriverError):
    """A cgroup operation failed; the message names the file and the value."""

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno


# Block I/O throttles: the v1 file blkio.throttle.<kind>_device, the v2 io.max key.
THROTTLES = {"read_bps": "rbps", "write_bps": "wbps", "read_iops": "riops", "write_iops": "wiops"}


class Limits:
    """Resource limits, 0 (or "") meaning unset. A plain class: see state.py."""

    FIELDS = (
        "memory", "memory_reservation", "memory_swap", "cpu_shares", "cpu_period", "cpu_quota",
        "cpuset_cpus", "cpuset_mems", "pids_limit", "blkio_weight", "oom_kill_disable", "memory_swappiness",
        "kernel_tcp", "device_rules", "blkio_throttle", "cpu_idle", "hugepage_limits", "unified",
        "cpu_rt_period", "cpu_rt_runtime",
    )
    __slots__ = FIELDS

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"unknown limits {sorted(unknown)}")
        self.memory: int = values.get("memory", 0)  # -1 is unlimited (as the two below)
        self.memory_reservation: int = values.get("memory_reservation", 0)
        self.memory_swap: int = values.get("memory_swap", 0)  # memory + swap
        self.cpu_shares: int = values.get("cpu_shares", 0)
        # Period and quota in microseconds; a negative quota is unlimited. One of them
        # alone leaves the other as it is (an update of one: runc's rule).
        self.cpu_period: int = values.get("cpu_period", 0)
        self.cpu_quota: int = values.get("cpu_quota", 0)
        # cgroup v1's real-time bandwidth (cpu.rt_period_us, cpu.rt_runtime_us; -1: unlimited)
        self.cpu_rt_period: int = values.get("cpu_rt_period", 0)
        self.cpu_rt_runtime: int = values.get("cpu_rt_runtime", 0)
        self.cpuset_cpus: str = values.get("cpuset_cpus", "")
        self.cpuset_mems: str = values.get("cpuset_mems", "")
        self.pids_limit: int = values.get("pids_limit", 0)  # -1 is unlimited
        self.blkio_weight: int = values.get("blkio_weight", 0)
        self.oom_kill_disable: bool = values.get("oom_kill_disable", False)
        self.memory_swappiness: int = values.get("memory_swappiness", -1)  # 0 is a value: -1 is unset
        self.kernel_tcp: int = values.get("kernel_tcp", 0)  # v1 only: TCP buffer memory
        # ("allow" or "deny", "c 1:3 rwm"), applied in order over deny-all:
        # see device_rules() below. Empty leaves the devices controller alone.
        self.device_rules: list[tuple[str, str]] = [tuple(r) for r in values.get("device_rules", ())]
        # (kind, major, minor, rate): kind one of THROTTLES, rate 0 lifts the limit.
        self.blkio_throttle: list[tuple[str, int, int, int]] = [
            tuple(t) for t in values.get("blkio_throttle", ())]
        self.cpu_idle: int = values.get("cpu_idle", 0)  # 1: the cgroup runs at SCHED_IDLE
        # (page size as the kernel names it, "2MB"; limit in bytes)
        self.hugepage_limits: list[tuple[str, int]] = [tuple(h) for h in values.get("hugepage_limits", ())]
        # cgroup v2 files written as given (OCI linux.resources.unified), after everything else
        self.unified: list[tuple[str, str]] = [tuple(u) for u in values.get("unified", ())]

    def wire(self) -> dict[str, Any]:
        """The fields that are set, as marshal carries them (``Limits(**wire)`` makes them again)."""
        unset = _UNSET
        return {name: getattr(self, name) for name in self.FIELDS if getattr(self, name) != unset[name]}

    def asked(self) -> list[str]:
        """The limits set, but for the device rules (which every cgroup has)."""
        return [name for name in self.wire() if name != "device_rules"]

    def check(self, *, update: bool = False) -> None:
        """Values no kernel accepts: refused before anything is created (or changed).

        ``update``: these change a running container's limits, and those left
        out keep their values; so a swap limit needs no memory limit beside
        it (cgroup v1 checks it against the memory limit in place).
        """
        for name in ("memory", "memory_reservation", "memory_swap", "cpu_rt_runtime"):
            if getattr(self, name) < -1:
                raise ConfigError(f"resources.{name}: must not be negative (but -1, unlimited)")
        for name in ("cpu_shares", "cpu_period", "cpu_rt_period"):
            if getattr(self, name) < 0:
                raise ConfigError(f"resources.{name}: must not be negative")
        if self.memory > 0 and self.memory < 6 * 1024 * 1024:
            raise ConfigError("resources.memory: the minimum is 6 MiB")
        if self.memory_swap > 0 and self.memory > 0 and self.memory_swap < self.memory:
            raise ConfigError("resources.memory_swap: must be at least resources.memory (it counts both)")
        if self.memory_swap > 0 and self.memory == -1:
            raise ConfigError("resources.memory_swap: must be -1 (unlimited) when resources.memory is")
        if self.memory_swap > 0 and not self.memory and not update:
            raise ConfigError("resources.memory_swap: needs resources.memory")
        if self.cpu_period and not 1000 <= self.cpu_period <= 1_000_000:
            raise ConfigError("resources.cpu_period: must lie between 1000 and 1000000 microseconds")
        if self.cpu_quota > 0 and self.cpu_quota < 1000:
            raise ConfigError("resources.cpu_quota: the minimum is 1000 microseconds")
        if not -1 <= self.memory_swappiness <= 100:
            raise ConfigError("resources.memory_swappiness: must lie between 0 and 100")
        for kind, major, minor, rate in self.blkio_throttle:
            if kind not in THROTTLES or min(major, minor, rate) < 0:
                raise ConfigError(f"resources.blkio_throttle: {kind} {major}:{minor} {rate} is not a throttle")
        if self.blkio_weight and not 10 <= self.blkio_weight <= 1000:
            raise ConfigError("resources.blkio_weight: must lie between 10 and 1000")
        if self.cpu_idle not in (0, 1):
            raise ConfigError("resources.cpu_idle: 0 or 1")
        for size, limit in self.hugepage_limits:
            if not (size[:-2].isdigit() and size[-2:] in ("KB", "MB", "GB")) or limit < 0:
                raise ConfigError(f"resources.hugepage_limits: {size} {limit} is not a page size (2MB) and a limit")
        for name, _ in self.unified:
            controller, dot, _ = name.partition(".")
            if not dot or not controller or "/" in name or controller == "cgroup":
                raise ConfigError(f"resources.unified: {name!r} is not a controller's file (such as memory.high); "
                                  "the cgroup.* files are the runtime's")
        for name in ("cpuset_cpus", "cpuset_mems"):
            value = getattr(self, name)
            if value and not all(_cpu_range(part) for part in value.split(",")):
                raise ConfigError(f"resources.{name}: {value!r} is not a list like '0-2,4'")


def _cpu_range(text: str) -> bool:
    """N or N-M, as cpuset.cpus and cpuset.mems take a list's items."""
    low, dash, high = text.partition("-")
    return all(part.isascii() and part.isdigit() for part in ((low, high) if dash else (low,)))


_UNSET: dict[str, Any] = {name: ([] if name in ("device_rules", "blkio_throttle", "hugepage_limits", "unified") else
                 "" if name in ("cpuset_cpus", "cpuset_mems") else -1 if name == "memory_swappiness" else
                 False if name == "oom_kill_disable" else 0) for name in Limits.FIELDS}
_version: list[int] = []


def version() -> int:
    """2 on a unified host, 1 on a legacy or hybrid one (looked up once: a host's layout is set at boot)."""
    if not _version:
        _version.append(2 if os.path.exists(os.path.join(ROOT, "cgroup.controllers")) else 1)
    return _version[0]


def v2_root() -> str:
    """Where this host's cgroup v2 hierarchy is mounted: ROOT on v2, a hybrid host's beside v1, or ""."""
    if version() == 2:
        return ROOT
    from execdriver.linux.cgroups.v1 import UNIFIED, mounts

    return mounts().get(UNIFIED, "")


def is_v2_directory(path: str) -> bool:
    """Whether ``path`` is in the cgroup v2 hierarchy, the one a clone can start a process in."""
    root = v2_root()
    return bool(root) and (path == root or path.startswith(root.rstrip("/") + "/"))


def own_path() -> str:
    """This process's cgroup, from the root ("" for the root itself): cgroup v2's, or v1's memory one.

    (On v1 each hierarchy may place a process differently; the memory
    hierarchy, which every container uses, stands for them all.)
    """
    wanted = "" if version() == 2 else "memory"
    with open("/proc/self/cgroup", encoding="utf-8") as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if (controllers == wanted) if wanted == "" else (wanted in controllers.split(",")):
                return path.rstrip("/")
    return ""


def delegated_subtree() -> str:
    """The cgroup v2 subtree delegated to this user, relative to the root, or "" if none.

    systemd delegates ``user@<uid>.service`` to the user's own manager:
    a process inside it (a user session's programs, ``systemd-run --user``)
    may make cgroups there and move its children into them, as rootless
    podman and crun do. Elsewhere (v1, a login session's scope, no user
    manager) a user can make none.
    """
    if version() != 2 or os.geteuid() == 0:
        return ""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as handle:
            own = next(line[3:].strip() for line in handle if line.startswith("0::"))
    except (OSError, StopIteration):
        return ""
    parts = own.strip("/").split("/")
    manager = f"user@{os.geteuid()}.service"
    if manager not in parts:
        return ""
    subtree = "/".join(parts[: parts.index(manager) + 1])
    directory = os.path.join(ROOT, subtree)
    writable = os.access(directory, os.W_OK) and os.access(os.path.join(directory, "cgroup.procs"), os.W_OK)
    return subtree if writable else ""


def why_no_cgroup() -> str:
    """Why a user without privileges gets no cgroup here, and what would give one."""
    if version() == 1:
        return "a user without privileges cannot create one on this host (cgroup v1 delegates nothing)"
    uid = os.geteuid()
    return (f"a user without privileges cannot create one here: this process is not in the cgroup v2 subtree "
            f"systemd delegates to uid {uid} (user@{uid}.service); run it in a user session, or with "
            "systemd-run --user --scope")


class NoCgroup:
    """The cgroup of a container that has none (one started without privileges).

    A user can create no cgroup on this host (no delegated cgroup v2 tree):
    such a container runs in its caller's. Limits are refused up front
    (spec.py), so there is nothing to apply or remove.
    """

    path = ""

    def create(self, limits: Limits) -> None:
        pass

    def add(self, pid: int) -> None:
        pass

    def exists(self) -> bool:
        return False

    def kill(self) -> None:
        pass

    def destroy(self, parent_levels: int = 0) -> None:
        pass

    def accounting(self) -> Accounting:
        from execdriver.linux.cgroups.base import Accounting

        return Accounting([])

    def oom_kills(self) -> int:
        return 0

    def oom_watch(self) -> tuple[int, int] | None:
        return None


def manager(path: str, root: str | None = None, cgroup_version: int | None = None,
            unified: bool = True) -> Manager:
    """The manager of the cgroup at ``path`` for this host (or for ``root``); "" is no cgroup.

    A path of runc's systemd form, ``slice:prefix:name`` (no "/"), is a
    transient scope that systemd makes (systemd.py); a cgroupfs path with a
    colon has a "/" (parts.place_cgroup makes sure of it). ``unified``: on
    a hybrid host, whether the cgroup is in its v2 hierarchy too (a
    container's state says: State.cgroup_manager).
    """
    if not path:
        return NoCgroup()  # type: ignore[return-value]
    if ":" in path and "/" not in path:  # runc's slice:prefix:name: a scope that systemd makes
        from execdriver.linux.cgroups.systemd import SystemdManager

        return SystemdManager(path, root)
    if (cgroup_version or version()) == 2:
        from execdriver.linux.cgroups.v2 import V2Manager

        return V2Manager(path, root or ROOT)
    from execdriver.linux.cgroups.v1 import V1Manager

    return V1Manager(path, unified=unified)


def remove_if_empty(name: str) -> None:
    """rmdir the cgroup ``name`` (relative to each hierarchy's root) where it is empty."""
    if version() == 2:
        directories = [os.path.join(ROOT, name)]
    else:
        from execdriver.linux.cgroups.v1 import mounts

        directories = [os.path.join(mount, name) for mount in dict.fromkeys(mounts().values())]
    for directory in directories:
        try:
            os.rmdir(directory)
        except OSError:
            pass  # absent, or another container's parent still


def system_cpu_usage() -> int:
    """Host CPU time in nanoseconds, as Docker computes it from /proc/stat."""
    with open("/proc/stat", encoding="utf-8") as handle:
        fields = handle.readline().split()[1:8]  # user nice system idle iowait irq softirq
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(f) for f in fields) * 1_000_000_000 // ticks


def interface_stats(pid: int) -> list[dict[str, Any]]:
    """Counters of every interface in the network namespace of ``pid`` (libcontainer's shape)."""
    try:
        with open(f"/proc/{pid}/net/dev", encoding="utf-8") as handle:
            lines = handle.readlines()[2:]
    except OSError:
        return []
    result = []
    for line in lines:
        name, _, counters = line.partition(":")
        values = [int(v) for v in counters.split()]
        if len(values) < 12:
            continue
        result.append({
            "name": name.strip(),
            "rx_bytes": values[0], "rx_packets": values[1], "rx_errors": values[2], "rx_dropped": values[3],
            "tx_bytes": values[8], "tx_packets": values[9], "tx_errors": values[10], "tx_dropped": values[11],
        })
    return result
