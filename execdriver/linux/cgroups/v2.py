"""The cgroup v2 manager: one directory in the unified hierarchy."""

from __future__ import annotations

import os
import select
import time

from execdriver.linux.cgroups import THROTTLES, CgroupError, Limits
from execdriver.linux.cgroups.base import Accounting, Manager, read, read_int, read_map, write

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Which controller each limit needs, enabled in the parents on demand.
NEEDS = {
    "memory": "memory", "memory_reservation": "memory", "memory_swap": "memory", "cpu_shares": "cpu",
    "cpu_period": "cpu", "cpu_quota": "cpu", "cpuset_cpus": "cpuset", "cpuset_mems": "cpuset",
    "pids_limit": "pids", "blkio_weight": "io", "blkio_throttle": "io", "cpu_idle": "cpu",
    "hugepage_limits": "hugetlb",
}


class V2Manager(Manager):
    version = 2

    def __init__(self, path: str, root: str) -> None:
        super().__init__(path)
        self.root = root
        self.dir = os.path.join(root, self.path)
        self._oom_kills = 0

    def directories(self) -> list[str]:
        return [self.dir]

    def _file(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def _prepare(self, limits: Limits) -> None:
        """Delegate every controller each parent offers, from our root down, as runc and crun do.

        Not only those the limits need: a container without limits still has
        its memory, pids, cpu and io files, so that its stats never read zero.
        A parent that holds processes itself cannot delegate (the kernel's
        no-internal-process rule): there only what the limits need is an error.
        """
        wanted = {NEEDS[name] for name in NEEDS if getattr(limits, name)}
        parent = self.root
        for part in self.path.split("/"):
            available = read(os.path.join(parent, "cgroup.controllers")).split()
            missing = sorted(wanted.difference(available))
            if missing:
                raise CgroupError(f"resources: the unified hierarchy offers no {', '.join(missing)} controller "
                                  f"at {parent} (cgroup.controllers: {' '.join(available) or 'none'})")
            enabled = read(os.path.join(parent, "cgroup.subtree_control")).split()
            if set(available) - set(enabled):
                try:
                    write(os.path.join(parent, "cgroup.subtree_control"), " ".join(f"+{c}" for c in available),
                          "cgroup")
                except CgroupError:
                    if wanted - set(enabled):
                        raise
            parent = os.path.join(parent, part)

    def set(self, limits: Limits, *, running: bool = False) -> None:
        if limits.oom_kill_disable:
            raise CgroupError("resources.oom_kill_disable: cgroup v2 cannot disable the OOM killer")
        if limits.device_rules and not running:  # (update leaves devices alone, as runc's does)
            from execdriver.linux.cgroups import devices

            try:
                devices.attach(self.dir, limits.device_rules)
            except OSError as err:
                raise CgroupError(f"resources.devices: cannot attach the device program to {self.dir}: "
                                  f"{err.strerror}", err.errno or 0) from None
        if limits.memory_swappiness >= 0:
            raise CgroupError("resources.memory_swappiness: cgroup v2 has no per-cgroup swappiness")
        if limits.kernel_tcp:
            raise CgroupError("resources.kernel_tcp: cgroup v2 has no separate TCP memory limit")
        if limits.cpu_rt_period or limits.cpu_rt_runtime:
            name = "cpu_rt_runtime" if limits.cpu_rt_runtime else "cpu_rt_period"
            raise CgroupError(f"resources.{name}: cgroup v2 has no real-time bandwidth per cgroup")
        if limits.memory or limits.memory_swap or limits.memory_reservation:
            self._set_memory(limits, running)
        if limits.cpu_shares:
            weight = 1 + ((limits.cpu_shares - 2) * 9999) // 262142
            write(self._file("cpu.weight"), max(1, min(10000, weight)), "resources.cpu_shares")
        if limits.cpu_quota or limits.cpu_period:
            quota, period = self.cpu_max(limits)
            write(self._file("cpu.max"), f"{'max' if quota < 0 else quota} {period}", "resources.cpu_quota")
        if limits.cpuset_cpus:
            write(self._file("cpuset.cpus"), limits.cpuset_cpus, "resources.cpuset_cpus")
        if limits.cpuset_mems:
            write(self._file("cpuset.mems"), limits.cpuset_mems, "resources.cpuset_mems")
        if limits.pids_limit:
            write(self._file("pids.max"), "max" if limits.pids_limit < 0 else limits.pids_limit,
                  "resources.pids_limit")
        if limits.blkio_weight:
            weight = 1 + (limits.blkio_weight - 10) * 9999 // 990
            write(self._file("io.weight"), f"default {weight}", "resources.blkio_weight")
        for kind, major, minor, rate in limits.blkio_throttle:
            write(self._file("io.max"), f"{major}:{minor} {THROTTLES[kind]}={rate or 'max'}",
                  f"resources.blkio_throttle ({kind} {major}:{minor})")
        if limits.cpu_idle:
            write(self._file("cpu.idle"), limits.cpu_idle, "resources.cpu_idle")
        for size, limit in limits.hugepage_limits:
            write(self._file(f"hugetlb.{size}.max"), limit, f"resources.hugepage_limits ({size})")
        for name, value in limits.unified:
            write(self._file(name), value, f"resources.unified ({name})")

    def _set_memory(self, limits: Limits, running: bool) -> None:
        """memory.swap.max, memory.max and memory.low, as runc writes them (-1: max).

        v2 limits swap apart from memory: memory_swap (memory + swap, v1's
        terms) becomes memory_swap - memory, so it needs the memory limit
        beside it; memory alone set to -1 lifts swap too.
        """
        memory, swap = limits.memory, limits.memory_swap
        if memory == -1 and not swap:
            swap = -1
        elif swap > 0:
            if memory <= 0:
                raise CgroupError("resources.memory_swap: cgroup v2 limits swap apart from memory: memory_swap "
                                  "(memory + swap) needs resources.memory with it")
            swap -= memory
        if memory > 0 and running and read_int(self._file("memory.current")) > memory:
            raise CgroupError(
                f"resources.memory: cannot lower the limit to {memory} bytes: the container uses "
                f"{read_int(self._file('memory.current'))} bytes; the old limit stays")
        if swap or limits.memory_swap > 0:  # (memory_swap == memory: no swap, 0)
            write(self._file("memory.swap.max"), "max" if swap < 0 else swap, "resources.memory_swap")
        if memory:
            write(self._file("memory.max"), "max" if memory < 0 else memory, "resources.memory")
            if not running and memory > 0:
                # An OOM kill takes the container's whole tree, not one of its processes:
                # what is left of a program whose worker was killed is rarely of use.
                write(self._file("memory.oom.group"), 1, "resources.memory (memory.oom.group)")
        if limits.memory_reservation:
            write(self._file("memory.low"), "max" if limits.memory_reservation < 0 else limits.memory_reservation,
                  "resources.memory_reservation")

    def cpu_max(self, limits: Limits) -> tuple[int, int]:
        """cpu.max's (quota, period) for ``limits``, -1 for max: one of them alone keeps the other in place.

        runc keeps the other from the config it saved; this reads what the
        cgroup has, which is the same unless changed behind the runtime's back.
        """
        quota, period = limits.cpu_quota, limits.cpu_period
        if not quota or not period:
            try:
                current_quota, current_period = read(self._file("cpu.max")).split()
            except (OSError, ValueError):
                current_quota, current_period = "max", "100000"  # the kernel's default
            quota = quota or (-1 if current_quota == "max" else int(current_quota))
            period = period or int(current_period)
        return quota, period

    def freeze(self) -> None:
        write(self._file("cgroup.freeze"), 1, "pause")
        self.wait_frozen(True)

    def thaw(self) -> None:
        write(self._file("cgroup.freeze"), 0, "unpause")
        self.wait_frozen(False)

    def frozen(self) -> bool:
        return read_map(self._file("cgroup.events")).get("frozen", 0) == 1

    def kill(self) -> None:
        if not os.path.exists(self._file("cgroup.kill")):
            super().kill()
            return
        write(self._file("cgroup.kill"), 1, "kill")
        deadline = time.monotonic() + 5
        while read_map(self._file("cgroup.events")).get("populated", 0) and time.monotonic() < deadline:
            time.sleep(0.001)

    def memory_limit(self) -> int:
        return read_int(self._file("memory.max"))

    def oom_kills(self) -> int:
        """The count now; once the cgroup is gone, the last one read (a systemd scope goes when empty)."""
        count = read_map(self._file("memory.events")).get("oom_kill", 0)
        self._oom_kills = max(count, self._oom_kills)
        return self._oom_kills

    def accounting(self) -> Accounting:
        return Accounting([(self._file("cpu.stat"), "usage_usec", 1000),
                           (self._file("memory.peak"), "", 1),  # (Linux 5.19)
                           (self._file("memory.events"), "oom_kill", 1)])

    def oom_watch(self) -> tuple[int, int] | None:
        try:
            return os.open(self._file("memory.events"), os.O_RDONLY | os.O_CLOEXEC), select.POLLPRI
        except OSError:
            return None

    def stats(self) -> dict[str, Any]:
        cpu = read_map(self._file("cpu.stat"))
        memory = read_map(self._file("memory.stat"))
        events = read_map(self._file("memory.events"))
        result: dict[str, Any] = {
            "cpu_stats": {
                "cpu_usage": {
                    "total_usage": cpu.get("usage_usec", 0) * 1000,
                    "percpu_usage": [],
                    "usage_in_kernelmode": cpu.get("system_usec", 0) * 1000,
                    "usage_in_usermode": cpu.get("user_usec", 0) * 1000,
                },
                "throttling_data": {
                    "periods": cpu.get("nr_periods", 0),
                    "throttled_periods": cpu.get("nr_throttled", 0),
                    "throttled_time": cpu.get("throttled_usec", 0) * 1000,
                },
            },
            "memory_stats": {
                "cache": memory.get("file", 0),
                "usage": {"usage": read_int(self._file("memory.current")),
                          "max_usage": read_int(self._file("memory.peak")),
                          "failcnt": events.get("max", 0), "limit": read_int(self._file("memory.max"))},
                "swap_usage": {"usage": read_int(self._file("memory.swap.current")), "max_usage": 0,
                               "failcnt": 0, "limit": read_int(self._file("memory.swap.max"))},
                "kernel_usage": {"usage": memory.get("kernel", 0), "max_usage": 0, "failcnt": 0, "limit": 0},
                "kernel_tcp_usage": {"usage": memory.get("sock", 0), "max_usage": 0, "failcnt": 0, "limit": 0},
                "use_hierarchy": True,
                "stats": memory,
            },
            "pids_stats": {"current": read_int(self._file("pids.current")),
                           "limit": read_int(self._file("pids.max"))},
            "blkio_stats": {
                "io_service_bytes_recursive": self._io("rbytes", "wbytes"),
                "io_serviced_recursive": self._io("rios", "wios"),
                "io_queue_recursive": [], "io_service_time_recursive": [], "io_wait_time_recursive": [],
                "io_merged_recursive": [], "io_time_recursive": [], "sectors_recursive": [],
            },
            "hugetlb_stats": self._hugetlb(),
        }
        for group, psi in self._pressure().items():
            result[group]["psi"] = psi
        return result

    def _pressure(self) -> dict[str, Any]:
        """PSI (cpu, memory, io.pressure) where the kernel keeps it, in runc 1.2's shape, under each stats group."""
        found: dict[str, Any] = {}
        for group, name in (("cpu_stats", "cpu"), ("memory_stats", "memory"), ("blkio_stats", "io")):
            try:
                text = read(self._file(f"{name}.pressure"))
            except OSError:
                continue
            psi: dict[str, Any] = {}
            for line in text.splitlines():  # some avg10=0.00 avg60=0.00 avg300=0.00 total=0
                kind, *pairs = line.split()
                values = dict(pair.split("=", 1) for pair in pairs)
                psi[kind] = {"avg10": float(values["avg10"]), "avg60": float(values["avg60"]),
                             "avg300": float(values["avg300"]), "total": int(values["total"])}
            found[group] = psi
        return found

    def _io(self, read_key: str, write_key: str) -> list[dict[str, Any]]:
        try:
            text = read(self._file("io.stat"))
        except OSError:
            return []
        entries = []
        for line in text.splitlines():
            device, *pairs = line.split()
            if ":" not in device:
                continue
            major, minor = (int(n) for n in device.split(":"))
            values = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
            for op, key in (("Read", read_key), ("Write", write_key)):
                entries.append({"major": major, "minor": minor, "op": op, "value": int(values.get(key, 0))})
        return entries

    def _hugetlb(self) -> dict[str, Any]:
        try:
            names = os.listdir(self.dir)
        except OSError:
            return {}
        sizes = sorted({n.split(".")[1] for n in names if n.startswith("hugetlb.") and n.endswith(".current")})
        return {size: {"usage": read_int(self._file(f"hugetlb.{size}.current")),
                       "max_usage": read_int(self._file(f"hugetlb.{size}.max_usage_in_bytes")),
                       "failcnt": read_map(self._file(f"hugetlb.{size}.events")).get("max", 0)}
                for size in sizes}
