"""The systemd cgroup driver: a container's cgroup is a transient scope that systemd makes.

On a host whose pid 1 is systemd, systemd owns the cgroup tree: a runtime
that makes directories in it behind systemd's back sees them moved or
removed when systemd next reorganises a slice, and the kubelet's default
driver expects every container in a unit. So, as runc's and crun's systemd
drivers do, the container's cgroup is a transient ``<prefix>-<name>.scope``
in a slice, made over D-Bus with StartTransientUnit, with ``Delegate=yes``
(the subtree is ours: the limits below are written to its files too, the
device program attached to it) and the init's pid; the limits also go in as
unit properties, so that systemd keeps them. ``delete`` stops the unit.

Paths keep runc's form, ``slice:prefix:name`` (``system.slice:docker:ID``),
in the launch spec and the state: :func:`execdriver.linux.cgroups.manager`
picks this manager for a path with colons. Everything else (stats, freezer,
pids, OOM events) is cgroup v2's, on the scope's directory.

D-Bus goes through jeepney, imported only here: see the README for why that
library, and what its import costs.
"""

from __future__ import annotations

import os
import time

from execdriver.linux.cgroups import ROOT, CgroupError, Limits
from execdriver.linux.cgroups.base import read
from execdriver.linux.cgroups.v2 import NEEDS, V2Manager

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_SYSTEMD = ("org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager")
_JOB_TIMEOUT = 10.0


def running() -> bool:
    """Whether systemd is this host's init (sd_booted(3)'s test)."""
    return os.path.isdir("/run/systemd/system")


def split(path: str, container_id: str = "") -> tuple[str, str]:
    """(slice, unit) of a ``slice:prefix:name`` path, as runc reads it.

    An empty slice is system.slice (a user's slice for a user without
    privileges); an empty name is the container's id. The unit is a scope:
    a slice holds no processes of its own.
    """
    parts = path.split(":")
    if len(parts) != 3:
        raise CgroupError(f"cgroupsPath {path!r}: a systemd path has the form slice:prefix:name")
    slice_name, prefix, name = parts
    name = name or container_id
    if not name:
        raise CgroupError(f"cgroupsPath {path!r}: names no unit")
    if not slice_name:
        slice_name = "system.slice" if os.geteuid() == 0 else "user.slice"
    if not slice_name.endswith(".slice") or "/" in slice_name:
        raise CgroupError(f"cgroupsPath {path!r}: {slice_name!r} is not a slice (name.slice)")
    if "/" in name or "/" in prefix:
        raise CgroupError(f"cgroupsPath {path!r}: a unit name has no '/'")
    if name.endswith(".slice"):
        raise CgroupError(f"cgroupsPath {path!r}: a container's unit is a scope, and {name!r} is a slice")
    return slice_name, f"{prefix}-{name}.scope" if prefix else f"{name}.scope"


def slice_directory(slice_name: str) -> str:
    """Where systemd puts a slice: each dash a level (a-b.slice is a.slice/a-b.slice); -.slice is the root."""
    if slice_name == "-.slice":
        return ""
    stem = slice_name[: -len(".slice")]
    levels, parts = [], stem.split("-")
    for index in range(len(parts)):
        levels.append("-".join(parts[: index + 1]) + ".slice")
    return "/".join(levels)


class SystemdManager(V2Manager):
    """A transient scope (cgroup v2 under systemd); its path is ``slice:prefix:name``."""

    def __init__(self, path: str, root: str | None = None) -> None:
        self.slice, self.unit = split(path)
        # A user's scopes are its own manager's (the user bus), in the subtree systemd delegates to it.
        uid = os.geteuid()
        manager = f"user.slice/user-{uid}.slice/user@{uid}.service" if uid else ""
        directory = "/".join(part for part in (manager, slice_directory(self.slice), self.unit) if part)
        super().__init__(directory, root or ROOT)
        self._limits: Limits | None = None

    def create(self, limits: Limits) -> None:
        """Nothing yet: a scope is made with its first process (:meth:`add`), which systemd needs."""
        if not running():
            raise CgroupError("--systemd-cgroup: systemd is not running on this host (use cgroupfs paths)")
        self._limits = limits

    def add(self, pid: int) -> None:
        if self._limits is None:  # the scope is there: a process joins it
            super().add(pid)
            return
        limits, self._limits = self._limits, None
        properties: list[tuple[str, tuple[str, Any]]] = [
            ("Description", ("s", f"execdriver container {self.unit}")),
            ("Slice", ("s", self.slice)),
            ("Delegate", ("b", True)),
            ("PIDs", ("au", [pid])),
            ("DefaultDependencies", ("b", False)),
            ("MemoryAccounting", ("b", True)), ("CPUAccounting", ("b", True)),
            ("IOAccounting", ("b", True)), ("TasksAccounting", ("b", True)),
            *unit_properties(limits, self.cpu_max(limits)),  # (no scope yet: cpu.max reads as the default)
        ]
        self._call("StartTransientUnit", "ssa(sv)a(sa(sv))", (self.unit, "replace", properties, []))
        self._wait_for(pid)
        try:
            self._prepare(limits)
            self.set(limits)
        except BaseException:
            self.destroy()
            raise

    def _prepare(self, limits: Limits) -> None:
        """The slices are systemd's: it delegates the scope's controllers itself (Delegate=yes); check them."""
        wanted = {NEEDS[name] for name in NEEDS if getattr(limits, name)}
        offered = read(os.path.join(self.dir, "cgroup.controllers")).split()
        missing = sorted(wanted.difference(offered))
        if missing:
            raise CgroupError(f"resources: systemd gave {self.unit} no {', '.join(missing)} controller "
                              f"(cgroup.controllers: {' '.join(offered) or 'none'})")

    def set(self, limits: Limits, *, running: bool = False) -> None:
        super().set(limits, running=running)
        properties = unit_properties(limits, self.cpu_max(limits))
        if running and properties:  # what update changes, systemd keeps too
            self._call("SetUnitProperties", "sba(sv)", (self.unit, True, properties))

    def destroy(self, parent_levels: int = 0) -> None:
        """Stop the scope (systemd removes its cgroup) and forget it; the slices are systemd's."""
        if not running():
            return  # (then no scope was ever made)
        try:
            self._call("StopUnit", "ss", (self.unit, "replace"))
        except CgroupError:
            pass  # already gone, or going
        deadline = time.monotonic() + _JOB_TIMEOUT
        while os.path.isdir(self.dir) and time.monotonic() < deadline:
            time.sleep(0.005)
        try:
            self._call("ResetFailedUnit", "s", (self.unit,))
        except CgroupError:
            pass  # not failed: nothing to reset
        if os.path.isdir(self.dir):
            raise CgroupError(f"systemd did not remove {self.unit}'s cgroup {self.dir}")

    def missing_ancestors(self) -> int:
        return 0  # the slices are systemd's

    def _wait_for(self, pid: int) -> None:
        """The job that starts the scope moves ``pid`` into it: wait until it has."""
        wanted = f"0::/{self.path}\n"
        deadline = time.monotonic() + _JOB_TIMEOUT
        while True:
            try:
                with open(f"/proc/{pid}/cgroup", encoding="utf-8") as handle:
                    if handle.read().endswith(wanted):
                        return
            except OSError:
                raise CgroupError(f"{self.unit}: the init {pid} is gone") from None
            if time.monotonic() > deadline:
                raise CgroupError(f"{self.unit}: systemd did not move the init into the scope")
            time.sleep(0.001)

    def _call(self, method: str, signature: str, body: tuple[Any, ...]) -> tuple[Any, ...]:
        from jeepney import DBusAddress, MessageType, new_method_call
        from jeepney.io.blocking import open_dbus_connection

        destination, path, interface = _SYSTEMD
        bus = "SYSTEM"
        if os.geteuid() != 0:  # the user's manager, on the user's bus (as sd_bus_open_user finds it)
            runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
            bus = os.environ.get("DBUS_SESSION_BUS_ADDRESS") or f"unix:path={runtime_dir}/bus"
        try:
            with open_dbus_connection(bus=bus) as connection:
                reply = connection.send_and_get_reply(
                    new_method_call(DBusAddress(path, destination, interface), method, signature, body),
                    timeout=_JOB_TIMEOUT)
        except (OSError, KeyError) as err:
            raise CgroupError(f"systemd {method} {self.unit}: cannot reach systemd over D-Bus: {err}") from None
        if reply.header.message_type == MessageType.error:
            raise CgroupError(f"systemd {method} {self.unit}: {reply.body[0] if reply.body else 'failed'}")
        result: tuple[Any, ...] = reply.body
        return result


def unit_properties(limits: Limits, cpu_max: tuple[int, int] = (-1, 100000)) -> list[tuple[str, tuple[str, Any]]]:
    """The limits systemd knows as unit properties, in its units (as runc's driver sets them).

    ``cpu_max``: the (quota, period) cpu.max gets (V2Manager.cpu_max), when
    the limits set either; -1 is unlimited, systemd's infinity (as for memory).
    """
    infinity = (1 << 64) - 1
    properties: list[tuple[str, tuple[str, Any]]] = []
    for name, value in (("MemoryMax", limits.memory), ("MemoryLow", limits.memory_reservation)):
        if value:
            properties.append((name, ("t", infinity if value < 0 else value)))
    if limits.memory_swap or limits.memory == -1:
        # v2's swap apart from memory (V2Manager._set_memory): memory_swap - memory
        swap = infinity if limits.memory_swap < 0 or limits.memory == -1 else limits.memory_swap - limits.memory
        properties.append(("MemorySwapMax", ("t", swap)))
    if limits.pids_limit:
        properties.append(("TasksMax", ("t", infinity if limits.pids_limit < 0 else limits.pids_limit)))
    if limits.cpu_quota or limits.cpu_period:
        properties += _cpu_quota(*cpu_max)
    if limits.cpu_shares:
        weight = 1 + ((limits.cpu_shares - 2) * 9999) // 262142
        properties.append(("CPUWeight", ("t", max(1, min(10000, weight)))))
    for name, cpus in (("AllowedCPUs", limits.cpuset_cpus), ("AllowedMemoryNodes", limits.cpuset_mems)):
        if cpus:
            properties.append((name, ("ay", _cpu_bits(cpus))))
    for name, text in limits.unified:  # those systemd knows, as runc's driver converts them
        properties += _unified_property(name, text.strip())
    return properties


def _cpu_quota(quota: int, period: int) -> list[tuple[str, tuple[str, Any]]]:
    """CPUQuotaPeriodUSec (systemd >= 242) and CPUQuotaPerSecUSec: per second, rounded up to
    systemd's 10 ms steps as runc rounds it; infinity for no quota."""
    per_second = (1 << 64) - 1
    if quota > 0:
        per_second = (quota * 1_000_000 // period + 9999) // 10000 * 10000
    return [("CPUQuotaPeriodUSec", ("t", period)), ("CPUQuotaPerSecUSec", ("t", per_second))]


def _cpu_bits(text: str) -> bytes:
    """A cpuset list ("0-2,4") as systemd's AllowedCPUs takes it: a bit mask, lowest byte first."""
    mask = 0
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        if low:
            for cpu in range(int(low), int(high or low) + 1):
                mask |= 1 << cpu
    return mask.to_bytes(max(1, (mask.bit_length() + 7) // 8), "little")


def _unified_property(name: str, text: str) -> list[tuple[str, tuple[str, Any]]]:
    infinity = (1 << 64) - 1
    memory = {"memory.min": "MemoryMin", "memory.low": "MemoryLow", "memory.high": "MemoryHigh",
              "memory.max": "MemoryMax", "memory.swap.max": "MemorySwapMax"}
    try:
        if name in memory or name == "pids.max":
            value = infinity if text == "max" else int(text)
            return [(memory.get(name, "TasksMax"), ("t", value))]
        if name == "cpu.weight":
            return [("CPUWeight", ("t", int(text)))]
        if name == "cpu.max":
            quota, _, period = text.partition(" ")
            return _cpu_quota(-1 if quota == "max" else int(quota), int(period or 100000))
        if name in ("cpuset.cpus", "cpuset.mems"):
            return [("AllowedCPUs" if name == "cpuset.cpus" else "AllowedMemoryNodes", ("ay", _cpu_bits(text)))]
    except ValueError:
        raise CgroupError(f"resources.unified ({name}): {text!r} is not a value of that file") from None
    return []
