"""The cgroup v1 manager: one directory per controller hierarchy."""

from __future__ import annotations

import itertools
import os
import select

from execdriver.linux.cgroups import CgroupError, Limits
from execdriver.linux.cgroups.base import Manager, read, read_int, read_map, write, write_each

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

    def __init__(self, path: str, mount_points: dict[str, str] | None = None) -> None:
        """``mount_points``: controller -> its hierarchy's mount; None reads this host's (mounts()).

        Given, it roots the manager elsewhere: a directory laid out as cgroupfs, in tests.
        """
        super().__init__(path)
        self.mount_points = mounts() if mount_points is None else mount_points
        self.dirs = {name: os.path.join(mount, self.path) for name, mount in self.mount_points.items()}
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
        if limits.device_rules:
            self._set_devices(limits.device_rules)
        if limits.kernel_tcp:
            write(self._file("memory", "memory.kmem.tcp.limit_in_bytes"), limits.kernel_tcp, "resources.kernel_tcp")
        if limits.cpu_shares:
            write(self._file("cpu", "cpu.shares"), limits.cpu_shares, "resources.cpu_shares")
        if limits.cpu_period:
            write(self._file("cpu", "cpu.cfs_period_us"), limits.cpu_period, "resources.cpu_period")
        if limits.cpu_quota:
            write(self._file("cpu", "cpu.cfs_quota_us"), limits.cpu_quota, "resources.cpu_quota")
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
        memory_file = self._file("memory", "memory.limit_in_bytes")
        swap_file = self._file("memory", "memory.memsw.limit_in_bytes")
        if limits.memory_swap and not os.path.exists(swap_file):
            raise CgroupError("resources.memory_swap: this kernel accounts no swap (memory.memsw.*)")
        swap = limits.memory_swap
        # memsw must stay >= memory: when growing, swap goes first.
        current_swap = read_int(swap_file, _UNLIMITED) if os.path.exists(swap_file) else _UNLIMITED
        order: list[tuple[str, int, str]] = []
        if limits.memory:
            order.append((memory_file, limits.memory, "resources.memory"))
        if swap:
            entry = (swap_file, swap, "resources.memory_swap")
            if swap == -1 or swap > current_swap:
                order.insert(0, entry)
            else:
                order.append(entry)
        elif limits.memory and limits.memory > current_swap:
            order.insert(0, (swap_file, limits.memory, "resources.memory"))
        for path, value, what in order:
            try:
                write(path, value, what)
            except CgroupError:
                if running and what == "resources.memory":
                    usage = read_int(self._file("memory", "memory.usage_in_bytes"))
                    raise CgroupError(
                        f"resources.memory: cannot lower the limit to {value} bytes: the container uses "
                        f"{usage} bytes that the kernel could not reclaim; the old limit stays"
                    ) from None
                raise

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
