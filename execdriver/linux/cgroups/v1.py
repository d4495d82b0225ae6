"""The cgroup v1 manager: one directory per controller hierarchy."""

from __future__ import annotations

import errno
import itertools
import os
import select

from execdriver.linux.cgroups import CgroupError, Limits
from execdriver.linux.cgroups.base import Accounting, Manager, read, read_int, read_map, write, write_each

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The controllers a container joins, where the host mounts them as v1.
CONTROLLERS = (
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "hugetlb",
    "net_cls", "net_prio", "perf_event",
)
_UNLIMITED = 0x7FFFFFFFFFFFF000  # what v1 reports for "no limit" on 64-bit hosts


NAMED = "name=systemd"  # systemd's own v1 hierarchy, controller-less
UNIFIED = ""  # a hybrid host's cgroup2 hierarchy, beside the v1 ones


def hierarchies() -> dict[str, str]:
    """controller -> mount point of its v1 hierarchy (co-mounted ones share one).

    Also systemd's named hierarchy (NAMED) and a hybrid host's cgroup v2
    one (UNIFIED), where they are mounted: runc places a container in them
    too, and tools in the container (systemd, cgroup readers) expect it.
    """
    found: dict[str, str] = {}
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            separator = fields.index("-")
            fstype = fields[separator + 1]
            if fstype == "cgroup2":
                found.setdefault(UNIFIED, fields[4])
            elif fstype == "cgroup":
                for option in fields[separator + 3].split(","):
                    if option in CONTROLLERS or option == NAMED:
                        found.setdefault(option, fields[4])
    return found


def file_to_join(controller: str) -> str:
    """What a process writes "0" to, to move itself in: ``tasks`` (init._join_cgroup says why),
    but a cgroup v2 hierarchy has only cgroup.procs."""
    return "cgroup.procs" if controller == UNIFIED else "tasks"


_hierarchies: dict[str, str] = {}


def mounts() -> dict[str, str]:
    """hierarchies(), read once per process."""
    if not _hierarchies:
        _hierarchies.update(hierarchies())
    return _hierarchies


class V1Manager(Manager):
    version = 1

    def __init__(self, path: str, mount_points: dict[str, str] | None = None, unified: bool = True) -> None:
        """``mount_points``: controller -> its hierarchy's mount; None reads this host's (mounts()).

        Given, it roots the manager elsewhere: a directory laid out as cgroupfs, in tests.
        ``unified``: whether the cgroup is in a hybrid host's cgroup v2
        hierarchy too (cgroups.manager).
        """
        super().__init__(path)
        self.mount_points = mounts() if mount_points is None else mount_points
        self.dirs = {name: os.path.join(mount, self.path) for name, mount in self.mount_points.items()}
        if not unified:
            self.dirs.pop(UNIFIED, None)
        if "memory" not in self.dirs or "freezer" not in self.dirs:
            raise CgroupError("cgroup v1: this host mounts no memory or freezer hierarchy")

    def directories(self) -> list[str]:
        # Co-mounted controllers share a directory: each once, freezer first
        # (pids() walks the first one).
        ordered = [self.dirs["freezer"], *self.dirs.values()]
        return list(dict.fromkeys(ordered))

    def join_files(self) -> list[str]:
        # tasks, not cgroup.procs: a single-threaded process moving itself
        # takes no threadgroup lock (init._join_cgroup says why that matters).
        files = {directory: os.path.join(directory, file_to_join(name)) for name, directory in self.dirs.items()}
        return [files[directory] for directory in self.directories()]

    def sub_join_files(self, subs: dict[str, str]) -> list[str]:
        from execdriver.linux.cgroups.base import _below

        unknown = set(subs) - {""} - set(self.dirs)
        if unknown:
            raise CgroupError(f"unknown controller {min(unknown)} in SubCgroupPaths")
        targets: dict[str, str] = {}  # hierarchy -> where in it; co-mounted controllers share one
        for name, directory in self.dirs.items():
            sub = subs.get(name)
            if sub is not None or directory not in targets:
                targets[directory] = _below(directory, sub if sub is not None else subs.get("", ""))
        return [os.path.join(target, "cgroup.procs") for target in targets.values()]

    def _file(self, controller: str, name: str) -> str:
        return os.path.join(self.dirs[controller], name)

    def _prepare(self, limits: Limits) -> None:
        if "cpuset" in self.dirs:
            self._inherit_cpuset()

    def _set_devices(self, rules: list[tuple[str, str]]) -> None:
        # Deny-all first: a new cgroup inherits its parent's allow-all.
        # Then the rules in order, each run of one verdict through one open.
        write(self._file("devices", "devices.deny"), "a", "resources.devices")
        for verdict, run in itertools.groupby(rules, key=lambda entry: entry[0]):
            write_each(self._file("devices", f"devices.{verdict}"),
                       [(rule, f"resources.devices ({verdict} {rule})") for _, rule in run])

    def _inherit_cpuset(self) -> None:
        # A new v1 cpuset is empty and admits no task: copy the parent's,
        # from the hierarchy's root down.
        mount = self.mount_points["cpuset"]
        directory = mount
        for part in self.path.split("/"):
            parent, directory = directory, os.path.join(directory, part)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not read(os.path.join(directory, name)):
                    write(os.path.join(directory, name), read(os.path.join(parent, name)), "cpuset")

    def set(self, limits: Limits, *, running: bool = False) -> None:
        if limits.unified:
            raise CgroupError(f"resources.unified: {limits.unified[0][0]} is a cgroup v2 file, and this host "
                              "has cgroup v1")
        if limits.memory or limits.memory_swap:
            self._set_memory(limits, running)
        if limits.memory_reservation:
            write(self._file("memory", "memory.soft_limit_in_bytes"), limits.memory_reservation,
                  "resources.memory_reservation")
        if limits.oom_kill_disable:
            write(self._file("memory", "memory.oom_control"), 1, "resources.oom_kill_disable")
        if limits.memory_swappiness >= 0:
            write(self._file("memory", "memory.swappiness"), limits.memory_swappiness, "resources.memory_swappiness")
        if limits.device_rules and not running:
            # Not on update, as runc's (SkipDevices): rewriting the rules denies
            # every device for a moment, and a process may open one then.
            self._set_devices(limits.device_rules)
        if limits.kernel_tcp:
            write(self._file("memory", "memory.kmem.tcp.limit_in_bytes"), limits.kernel_tcp, "resources.kernel_tcp")
        if limits.cpu_shares:
            self._set_shares(limits.cpu_shares)
        self._set_bandwidth("cfs", limits.cpu_period, limits.cpu_quota, "resources.cpu_period", "resources.cpu_quota")
        self._set_bandwidth("rt", limits.cpu_rt_period, limits.cpu_rt_runtime, "resources.cpu_rt_period",
                            "resources.cpu_rt_runtime")
        if limits.cpuset_cpus:
            write(self._file("cpuset", "cpuset.cpus"), limits.cpuset_cpus, "resources.cpuset_cpus")
        if limits.cpuset_mems:
            write(self._file("cpuset", "cpuset.mems"), limits.cpuset_mems, "resources.cpuset_mems")
        if limits.pids_limit:
            write(self._file("pids", "pids.max"), "max" if limits.pids_limit < 0 else limits.pids_limit,
                  "resources.pids_limit")
        if limits.blkio_weight:
            write(self._file("blkio", "blkio.weight"), limits.blkio_weight, "resources.blkio_weight")
        for kind, major, minor, rate in limits.blkio_throttle:
            write(self._file("blkio", f"blkio.throttle.{kind}_device"), f"{major}:{minor} {rate}",
                  f"resources.blkio_throttle ({kind} {major}:{minor})")
        if limits.cpu_idle:
            write(self._file("cpu", "cpu.idle"), limits.cpu_idle, "resources.cpu_idle")
        if limits.hugepage_limits and "hugetlb" not in self.dirs:
            raise CgroupError("resources.hugepage_limits: this host's cgroup v1 has no hugetlb hierarchy")
        for size, limit in limits.hugepage_limits:
            write(self._file("hugetlb", f"hugetlb.{size}.limit_in_bytes"), limit,
                  f"resources.hugepage_limits ({size})")

    def _set_memory(self, limits: Limits, running: bool) -> None:
        """memory.limit_in_bytes and memory.memsw.limit_in_bytes (memory + swap), in runc's order.

        The kernel keeps memsw >= memory at every step: when both are given
        and the new memsw lies above the memory limit in place, memsw goes
        first, else memory does. Memory alone set to -1 lifts memsw too. If
        the second write fails, the first is undone: the old limits stay.
        """
        memory_file = self._file("memory", "memory.limit_in_bytes")
        swap_file = self._file("memory", "memory.memsw.limit_in_bytes")
        memory, swap, accounted = limits.memory, limits.memory_swap, os.path.exists(swap_file)
        if swap and not accounted:
            raise CgroupError("resources.memory_swap: this kernel accounts no swap (memory.memsw.*)")
        if memory == -1 and not swap and accounted:
            swap = -1
        steps = [(memory_file, memory, "resources.memory"), (swap_file, swap, "resources.memory_swap")]
        if memory and swap and (swap == -1 or read_int(memory_file) < swap):
            steps.reverse()
        done: list[tuple[str, str]] = []
        for path, value, what in steps:
            if not value:
                continue
            old = read(path)
            try:
                write(path, value, what)
            except CgroupError as err:
                for undo_path, undo_value in reversed(done):
                    try:
                        write(undo_path, -1 if int(undo_value) >= _UNLIMITED else undo_value, what)
                    except CgroupError:
                        pass  # (the kernel's error below says what failed)
                alone = not (limits.memory_swap if what == "resources.memory" else limits.memory)
                raise self._memory_error(err, what, value, running, alone) from None
            done.append((path, old))

    def _memory_error(self, err: CgroupError, what: str, value: int, running: bool, alone: bool) -> CgroupError:
        """The kernel's EBUSY and EINVAL in the terms of the limits (``alone``: memory without swap, or the reverse)."""
        if err.errno == errno.EBUSY and running and what == "resources.memory":
            usage = read_int(self._file("memory", "memory.usage_in_bytes"))
            return CgroupError(f"resources.memory: cannot lower the limit to {value} bytes: the container uses "
                               f"{usage} bytes that the kernel could not reclaim; the old limit stays", err.errno)
        if err.errno == errno.EINVAL and alone and what == "resources.memory":
            swap = read_int(self._file("memory", "memory.memsw.limit_in_bytes"), _UNLIMITED)
            if value == -1 or value > swap:
                return CgroupError(f"resources.memory: {value} is above the memory+swap limit in place ({swap}); "
                                   "give memory_swap with it", err.errno)
        if err.errno == errno.EINVAL and alone and what == "resources.memory_swap" and value != -1:
            memory = read_int(self._file("memory", "memory.limit_in_bytes"))
            if value < memory:
                return CgroupError(f"resources.memory_swap: {value} is below the memory limit in place ({memory}); "
                                   "give memory with it", err.errno)
        return err

    def _set_shares(self, shares: int) -> None:
        """cpu.shares; the kernel clamps what lies out of its range (2 to 262144): read back, as runc
        does, and the old value put back."""
        path = self._file("cpu", "cpu.shares")
        old = read(path)
        write(path, shares, "resources.cpu_shares")
        taken = read_int(path)
        if taken != shares:
            write(path, old, "resources.cpu_shares")
            bound = "maximum" if shares > taken else "minimum"
            raise CgroupError(f"resources.cpu_shares: the {bound} allowed cpu-shares is {taken}")

    def _set_bandwidth(self, kind: str, period: int, quota: int, period_what: str, quota_what: str) -> None:
        """cpu.cfs_* (kind "cfs") or cpu.rt_* ("rt"): the period, then the quota (runtime), either alone.

        The kernel refuses (EINVAL) a period that would put the old quota
        over the parent's share or (rt) below the runtime; with a quota
        given too, the period is written again after it, as runc does.
        """
        period_file = self._file("cpu", f"cpu.{kind}_period_us")
        quota_file = self._file("cpu", f"cpu.{kind}_quota_us" if kind == "cfs" else "cpu.rt_runtime_us")
        pending = False
        if period:
            try:
                write(period_file, period, period_what)
            except CgroupError as err:
                if err.errno != errno.EINVAL or not quota:
                    raise
                pending = True
        if quota:
            try:
                write(quota_file, -1 if kind == "cfs" and quota < 0 else quota, quota_what)
            except CgroupError as err:
                if err.errno != errno.EINVAL:
                    raise
                why = ("quota / period may not exceed the parent cgroup's" if kind == "cfs" else
                       "the runtime may not exceed its period, nor the parent cgroup's real-time share")
                raise CgroupError(f"{err} ({why})", err.errno) from None
            if pending:
                write(period_file, period, period_what)

    def freeze(self) -> None:
        write(self._file("freezer", "freezer.state"), "FROZEN", "pause")
        self.wait_frozen(True)

    def thaw(self) -> None:
        write(self._file("freezer", "freezer.state"), "THAWED", "unpause")
        self.wait_frozen(False)

    def frozen(self) -> bool:
        return read(self._file("freezer", "freezer.state")) == "FROZEN"

    def memory_limit(self) -> int:
        limit = read_int(self._file("memory", "memory.limit_in_bytes"))
        return 0 if limit >= _UNLIMITED else limit

    def oom_kills(self) -> int:
        return read_map(self._file("memory", "memory.oom_control")).get("oom_kill", 0)

    def accounting(self) -> Accounting:
        cpu = self._file("cpuacct", "cpuacct.usage") if "cpuacct" in self.dirs else ""
        return Accounting([(cpu, "", 1), (self._file("memory", "memory.max_usage_in_bytes"), "", 1),
                           (self._file("memory", "memory.oom_control"), "oom_kill", 1)])

    def oom_watch(self) -> tuple[int, int] | None:
        eventfd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            control = os.open(self._file("memory", "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
            try:
                write(self._file("memory", "cgroup.event_control"), f"{eventfd} {control}", "oom events")
            finally:
                os.close(control)
        except (OSError, CgroupError):
            os.close(eventfd)
            return None
        return eventfd, select.POLLIN

    def stats(self) -> dict[str, Any]:
        return {
            "cpu_stats": self._cpu_stats(),
            "memory_stats": self._memory_stats(),
            "pids_stats": {
                "current": read_int(self._file("pids", "pids.current")) if "pids" in self.dirs else 0,
                "limit": read_int(self._file("pids", "pids.max")) if "pids" in self.dirs else 0,
            },
            "blkio_stats": self._blkio_stats(),
            "hugetlb_stats": self._hugetlb_stats(),
        }

    def _cpu_stats(self) -> dict[str, Any]:
        usage: dict[str, Any] = {"total_usage": 0, "percpu_usage": [], "usage_in_kernelmode": 0,
                                 "usage_in_usermode": 0}
        if "cpuacct" in self.dirs:
            ticks = os.sysconf("SC_CLK_TCK")
            times = read_map(self._file("cpuacct", "cpuacct.stat"))
            usage = {
                "total_usage": read_int(self._file("cpuacct", "cpuacct.usage")),
                "percpu_usage": [int(v) for v in read(self._file("cpuacct", "cpuacct.usage_percpu")).split()],
                "usage_in_kernelmode": times.get("system", 0) * 1_000_000_000 // ticks,
                "usage_in_usermode": times.get("user", 0) * 1_000_000_000 // ticks,
            }
        throttled = read_map(self._file("cpu", "cpu.stat")) if "cpu" in self.dirs else {}
        return {
            "cpu_usage": usage,
            "throttling_data": {
                "periods": throttled.get("nr_periods", 0),
                "throttled_periods": throttled.get("nr_throttled", 0),
                "throttled_time": throttled.get("throttled_time", 0),
            },
        }

    def _memory_data(self, prefix: str) -> dict[str, int]:
        def value(name: str) -> int:
            return read_int(self._file("memory", f"{prefix}.{name}"))

        limit = value("limit_in_bytes")
        return {"usage": value("usage_in_bytes"), "max_usage": value("max_usage_in_bytes"),
                "failcnt": value("failcnt"), "limit": 0 if limit >= _UNLIMITED else limit}

    def _memory_stats(self) -> dict[str, Any]:
        stat = read_map(self._file("memory", "memory.stat"))
        return {
            "cache": stat.get("cache", 0),
            "usage": self._memory_data("memory"),
            "swap_usage": self._memory_data("memory.memsw"),
            "kernel_usage": self._memory_data("memory.kmem"),
            "kernel_tcp_usage": self._memory_data("memory.kmem.tcp"),
            "use_hierarchy": read_int(self._file("memory", "memory.use_hierarchy")) == 1,
            "stats": stat,
        }

    def _blkio_entries(self, name: str) -> list[dict[str, Any]]:
        if "blkio" not in self.dirs:
            return []
        try:
            text = read(self._file("blkio", name))
        except OSError:
            return []
        entries = []
        for line in text.split("\n"):
            parts = line.split()
            if len(parts) == 3 and ":" in parts[0]:
                major, minor = parts[0].split(":")
                entries.append({"major": int(major), "minor": int(minor), "op": parts[1], "value": int(parts[2])})
        return entries

    def _blkio_stats(self) -> dict[str, Any]:
        # Hosts without CFQ (this one) keep only the throttle files, as in runc.
        return {
            "io_service_bytes_recursive": self._blkio_entries("blkio.throttle.io_service_bytes_recursive"),
            "io_serviced_recursive": self._blkio_entries("blkio.throttle.io_serviced_recursive"),
            "io_queue_recursive": [],
            "io_service_time_recursive": [],
            "io_wait_time_recursive": [],
            "io_merged_recursive": [],
            "io_time_recursive": [],
            "sectors_recursive": [],
        }

    def _hugetlb_stats(self) -> dict[str, Any]:
        if "hugetlb" not in self.dirs:
            return {}
        sizes = sorted({name.split(".")[1] for name in os.listdir(self.dirs["hugetlb"])
                        if name.startswith("hugetlb.") and name.endswith(".usage_in_bytes")})
        return {size: {"usage": read_int(self._file("hugetlb", f"hugetlb.{size}.usage_in_bytes")),
                       "max_usage": read_int(self._file("hugetlb", f"hugetlb.{size}.max_usage_in_bytes")),
                       "failcnt": read_int(self._file("hugetlb", f"hugetlb.{size}.failcnt"))} for size in sizes}
