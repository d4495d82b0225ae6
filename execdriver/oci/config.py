"""An OCI bundle's config.json, read into the launch spec: the OCI front end's converter.

Every field of the runtime spec (1.x) that Linux gives is either carried
out or refused with a ConfigError that names it: nothing is dropped in
silence. Mount options are read as runc reads them. The launch spec is
built here from the config alone (the API's converter is command.py), then
checked by spec.validate, as runc's specconv fills a configs.Config
before its validator runs.
"""

from __future__ import annotations

import os
import posixpath

from execdriver.errors import ConfigError
from execdriver.linux import cgroups, syscalls
from execdriver.linux.devices import DEFAULT_DEVICES, Device, device_rules
from execdriver.linux.filesystem import Filesystem, Mount
from execdriver.linux.syscalls import (
    MS_BIND,
    MS_DIRSYNC,
    MS_MANDLOCK,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_NOSYMFOLLOW,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_SHARED,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_SYNCHRONOUS,
    MS_UNBINDABLE,
)
from execdriver.native.spec import LaunchSpec
from execdriver.oci.process import get as _get
from execdriver.oci.process import process_fields, read_object, seccomp_listener, seccomp_program, selinux_enabled

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# mount(8) options: name -> (flags to set, flags to clear)
MOUNT_FLAGS = {
    "async": (0, MS_SYNCHRONOUS), "atime": (0, MS_NOATIME), "bind": (MS_BIND, 0), "defaults": (0, 0),
    "dev": (0, MS_NODEV), "diratime": (0, MS_NODIRATIME), "dirsync": (MS_DIRSYNC, 0), "exec": (0, MS_NOEXEC),
    "mand": (MS_MANDLOCK, 0), "noatime": (MS_NOATIME, 0), "nodev": (MS_NODEV, 0), "nodiratime": (MS_NODIRATIME, 0),
    "noexec": (MS_NOEXEC, 0), "nomand": (0, MS_MANDLOCK), "norelatime": (0, MS_RELATIME),
    "nostrictatime": (0, MS_STRICTATIME), "nosuid": (MS_NOSUID, 0), "rbind": (MS_BIND | MS_REC, 0),
    "relatime": (MS_RELATIME, 0), "remount": (MS_REMOUNT, 0), "ro": (MS_RDONLY, 0), "rw": (0, MS_RDONLY),
    "strictatime": (MS_STRICTATIME, 0), "suid": (0, MS_NOSUID), "sync": (MS_SYNCHRONOUS, 0),
}
# The recursive ones (runtime spec 1.1, runc 1.1): name -> (flags to set, flags to clear) on every mount below.
RECURSIVE_FLAGS = {
    "rro": (MS_RDONLY, 0), "rrw": (0, MS_RDONLY), "rnosuid": (MS_NOSUID, 0), "rsuid": (0, MS_NOSUID),
    "rnodev": (MS_NODEV, 0), "rdev": (0, MS_NODEV), "rnoexec": (MS_NOEXEC, 0), "rexec": (0, MS_NOEXEC),
    "rnodiratime": (MS_NODIRATIME, 0), "rdiratime": (0, MS_NODIRATIME), "rrelatime": (MS_RELATIME, 0),
    "rnorelatime": (0, MS_RELATIME), "rnoatime": (MS_NOATIME, 0), "ratime": (0, MS_NOATIME),
    "rstrictatime": (MS_STRICTATIME, 0), "rnostrictatime": (0, MS_STRICTATIME),
    "rnosymfollow": (MS_NOSYMFOLLOW, 0), "rsymfollow": (0, MS_NOSYMFOLLOW),
}
PROPAGATION = {"private": MS_PRIVATE, "shared": MS_SHARED, "slave": MS_SLAVE, "unbindable": MS_UNBINDABLE}
PROPAGATION.update({"r" + name: value | MS_REC for name, value in list(PROPAGATION.items())})
_NAMESPACES = {
    "pid": syscalls.CLONE_NEWPID, "network": syscalls.CLONE_NEWNET, "mount": syscalls.CLONE_NEWNS,
    "ipc": syscalls.CLONE_NEWIPC, "uts": syscalls.CLONE_NEWUTS, "cgroup": syscalls.CLONE_NEWCGROUP,
    "user": syscalls.CLONE_NEWUSER, "time": 0x80,
}


def load(bundle: str) -> dict[str, Any]:
    config = read_object(os.path.join(bundle, "config.json"), "config.json")
    version = _get(config, "ociVersion", str, "config", "")
    if not version.startswith("1."):
        raise ConfigError(f"ociVersion: {version!r} is not a 1.x version of the runtime spec")
    return config


def _mount(entry: Any, index: int, bundle: str) -> Mount:
    where = f"mounts[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected an object")
    destination = _get(entry, "destination", str, where, "")
    if not destination.startswith("/"):
        raise ConfigError(f"{where}.destination: {destination!r} is not an absolute path")
    fstype = _get(entry, "type", str, where, "")
    source = _get(entry, "source", str, where, "")
    options = _get(entry, "options", list, where, [])
    flags = cleared = propagation = recursive_set = recursive_clear = 0
    data = []
    for option in options:
        if not isinstance(option, str):
            raise ConfigError(f"{where}.options: expected strings")
        if option in MOUNT_FLAGS:
            add, clear = MOUNT_FLAGS[option]
            flags, cleared = (flags | add) & ~clear, (cleared | clear) & ~add
        elif option in PROPAGATION:
            propagation = PROPAGATION[option]
        elif option in RECURSIVE_FLAGS:
            add, clear = RECURSIVE_FLAGS[option]
            recursive_set, recursive_clear = (recursive_set | add) & ~clear, (recursive_clear | clear) & ~add
        elif option in ("tmpcopyup", "idmap", "ridmap"):
            raise ConfigError(f"{where}.options: {option!r} is not supported")
        else:
            data.append(option)
    recursive = (recursive_set, recursive_clear)
    destination = posixpath.normpath(destination)
    if fstype == "bind" or flags & MS_BIND:
        if not os.path.isabs(source):
            source = os.path.join(bundle, source)
        if not os.path.exists(source):
            raise ConfigError(f"{where}.source: {source} does not exist")
        real = os.path.realpath(source)
        bind_flags = MS_BIND | (flags & MS_REC)
        remount = flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
        return Mount(destination, real, "", bind_flags, ",".join(data), propagation, remount, os.path.isdir(real),
                     recursive)
    if fstype == "cgroup":
        return Mount(destination, "cgroup", "cgroup", flags, "", propagation)
    if not fstype:
        raise ConfigError(f"{where}.type: a mount that is not a bind needs a type")
    return Mount(destination, source or fstype, fstype, flags, ",".join(data), propagation, recursive=recursive)


def _namespaces(linux: dict[str, Any]) -> tuple[int, list[tuple[str, int]]]:
    flags, join = 0, []
    for index, entry in enumerate(_get(linux, "namespaces", list, "linux", [])):
        where = f"linux.namespaces[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected an object")
        kind = _get(entry, "type", str, where, "")
        if kind not in _NAMESPACES:
            raise ConfigError(f"{where}.type: unknown namespace {kind!r}")
        if kind == "time":
            raise ConfigError(f"{where}: time namespaces are not supported by this runtime yet")
        path = _get(entry, "path", str, where, "")
        if kind == "user" and path:
            raise ConfigError(f"{where}.path: joining a user namespace is not supported by this runtime yet")
        if not path:
            flags |= _NAMESPACES[kind]
            continue
        if not os.path.exists(path):
            raise ConfigError(f"{where}.path: {path} does not exist")
        if kind == "mount" and os.readlink(path) == os.readlink("/proc/self/ns/mnt"):
            # The rootfs would be mounted, and / made private, on the host itself.
            raise ConfigError(f"{where}.path: {path} is the host's own mount namespace")
        join.append((path, _NAMESPACES[kind]))  # a pid one is entered before the clone: spawn.py
    # Without a mount namespace the container shares the runtime's, as runc's does: its root
    # is mounted there (under the state directory, private) and chrooted into (rootfs.setup).
    return flags, join


def _mappings(linux: dict[str, Any], key: str) -> list[tuple[int, int, int]]:
    result = []
    for index, entry in enumerate(_get(linux, key, list, "linux", [])):
        where = f"linux.{key}[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected an object")
        result.append((_get(entry, "containerID", int, where, 0), _get(entry, "hostID", int, where, 0),
                       _get(entry, "size", int, where, 0)))
    return result


def _limits(linux: dict[str, Any]) -> cgroups.Limits:
    resources = _get(linux, "resources", dict, "linux", {})
    limits = resource_limits(resources)
    limits["device_rules"] = device_rules(_device_rules(resources, "linux.resources"))
    return cgroups.Limits(**limits)


def _device_rules(resources: dict[str, Any], where: str) -> list[tuple[str, str]]:
    """linux.resources.devices as devices.allow/deny lines (update leaves devices alone, as runc)."""
    rules = []
    for index, rule in enumerate(_get(resources, "devices", list, where, [])):
        at = f"{where}.devices[{index}]"
        if not isinstance(rule, dict) or not isinstance(rule.get("allow"), bool):
            raise ConfigError(f"{at}: needs allow (true or false)")
        kind = _get(rule, "type", str, at, "") or "a"
        if kind not in ("a", "b", "c"):
            raise ConfigError(f"{at}.type: must be a, b or c, got {kind!r}")
        numbers = []
        for key in ("major", "minor"):
            number = _get(rule, key, int, at, -1)
            if number < -1:
                raise ConfigError(f"{at}.{key}: must be a device number or -1 for any, got {number}")
            numbers.append("*" if number == -1 else str(number))
        given = _get(rule, "access", str, at, "") or "rwm"
        access = "".join(letter for letter in "rwm" if letter in given)  # runc ignores other letters ("rwa")
        if not access:
            raise ConfigError(f"{at}.access: needs r, w or m, got {given!r}")
        verdict = "allow" if rule["allow"] else "deny"
        if kind == "a" and set(access) != set("rwm"):
            # The kernel reads "a" as every access: a partial one is both kinds.
            rules += [(verdict, f"c *:* {access}"), (verdict, f"b *:* {access}")]
        elif kind == "a":
            rules.append((verdict, "a"))
        else:
            rules.append((verdict, f"{kind} {numbers[0]}:{numbers[1]} {access}"))
    return rules


_RESOURCE_KEYS = {  # LinuxResources' members, as Go's JSON matches them to any case of a name
    "": ("devices", "memory", "cpu", "pids", "blockIO", "hugepageLimits", "network", "rdma", "unified"),
    "memory": ("limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness", "disableOOMKiller",
               "useHierarchy", "checkBeforeUpdate"),
    "cpu": ("shares", "quota", "burst", "period", "realtimeRuntime", "realtimePeriod", "cpus", "mems", "idle"),
    "pids": ("limit",),
    "blockIO": ("weight", "leafWeight", "weightDevice", "throttleReadBpsDevice", "throttleWriteBpsDevice",
                "throttleReadIOPSDevice", "throttleWriteIOPSDevice"),
}


def _fold(obj: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """``obj`` with each key that is a name in another case ("CPU", "Cpus") renamed to it, as Go
    decodes JSON into a struct (runc reads config.json and update's --resources so); the last wins."""
    lower = {name.lower(): name for name in names}
    return {lower.get(key.lower(), key) if key not in names else key: value for key, value in obj.items()}


def resource_limits(resources: dict[str, Any], where: str = "linux.resources") -> dict[str, Any]:
    """An OCI LinuxResources object as Limits fields; zero and absent mean unset."""
    limits: dict[str, Any] = {}
    resources = _fold(resources, _RESOURCE_KEYS[""])
    for key in ("memory", "cpu", "pids", "blockIO"):
        if isinstance(resources.get(key), dict):
            resources[key] = _fold(resources[key], _RESOURCE_KEYS[key])
    memory = _get(resources, "memory", dict, where, {})
    for key, name in (("limit", "memory"), ("reservation", "memory_reservation"), ("swap", "memory_swap")):
        value = _get(memory, key, int, f"{where}.memory", 0)
        if value:
            limits[name] = value
    if _get(memory, "disableOOMKiller", bool, f"{where}.memory", False):
        limits["oom_kill_disable"] = True
    # memory.kernel is left alone as runc does: kernels since 5.16 accept and ignore kmem limits.
    kernel_tcp = _get(memory, "kernelTCP", int, f"{where}.memory", 0)
    if kernel_tcp:
        limits["kernel_tcp"] = kernel_tcp
    swappiness = memory.get("swappiness")
    if swappiness is not None:
        # Go's uint64 carries -1 as 2**64-1 in some engines' specs: both mean "leave it".
        if not isinstance(swappiness, int) or isinstance(swappiness, bool):
            raise ConfigError(f"{where}.memory.swappiness: expected an integer")
        if 0 <= swappiness <= 100:
            limits["memory_swappiness"] = swappiness
        elif swappiness not in (-1, 2**64 - 1):
            raise ConfigError(f"{where}.memory.swappiness: must lie between 0 and 100, got {swappiness}")
    cpu = _get(resources, "cpu", dict, where, {})
    for key, name in (("shares", "cpu_shares"), ("quota", "cpu_quota"), ("period", "cpu_period")):
        value = _get(cpu, key, int, f"{where}.cpu", 0)
        if value:
            limits[name] = value
    for key, name in (("cpus", "cpuset_cpus"), ("mems", "cpuset_mems")):
        value = _get(cpu, key, str, f"{where}.cpu", "")
        if value:
            limits[name] = value
    idle = _get(cpu, "idle", int, f"{where}.cpu", 0)
    if idle:
        limits["cpu_idle"] = idle
    for key, name in (("realtimePeriod", "cpu_rt_period"), ("realtimeRuntime", "cpu_rt_runtime")):
        value = _get(cpu, key, int, f"{where}.cpu", 0)
        if value:
            limits[name] = value
    if cpu.get("burst"):
        raise ConfigError(f"{where}.cpu.burst: not supported by this runtime")
    pids = _get(resources, "pids", dict, where, {})
    pids_limit = _get(pids, "limit", int, f"{where}.pids", 0)
    if pids_limit:
        limits["pids_limit"] = pids_limit
    block = _get(resources, "blockIO", dict, where, {})
    weight = _get(block, "weight", int, f"{where}.blockIO", 0)
    if weight:
        limits["blkio_weight"] = weight
    throttles = []
    for key, kind in (("throttleReadBpsDevice", "read_bps"), ("throttleWriteBpsDevice", "write_bps"),
                      ("throttleReadIOPSDevice", "read_iops"), ("throttleWriteIOPSDevice", "write_iops")):
        for index, entry in enumerate(_get(block, key, list, f"{where}.blockIO", [])):
            at = f"{where}.blockIO.{key}[{index}]"
            if not isinstance(entry, dict):
                raise ConfigError(f"{at}: expected an object with major, minor and rate")
            numbers = [_get(entry, name, int, at, -1) for name in ("major", "minor", "rate")]
            if min(numbers) < 0:
                raise ConfigError(f"{at}: needs major, minor and rate, none negative")
            throttles.append((kind, *numbers))
    if throttles:
        limits["blkio_throttle"] = throttles
    for key in ("leafWeight", "weightDevice"):
        if block.get(key):
            raise ConfigError(f"{where}.blockIO.{key}: not supported by this runtime")
    hugepages = []
    for index, entry in enumerate(_get(resources, "hugepageLimits", list, where, [])):
        at = f"{where}.hugepageLimits[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{at}: expected an object with pageSize and limit")
        hugepages.append((_get(entry, "pageSize", str, at, ""), _get(entry, "limit", int, at, 0)))
    if hugepages:
        limits["hugepage_limits"] = hugepages
    unified = _get(resources, "unified", dict, where, {})
    for name, value in unified.items():
        if not isinstance(value, str):
            raise ConfigError(f"{where}.unified.{name}: expected a string")
    if unified:
        limits["unified"] = sorted(unified.items())
    if resources.get("rdma"):
        raise ConfigError(f"{where}.rdma: the rdma controller is not supported by this runtime")
    if resources.get("network"):  # (classID and priorities: v1's net_cls and net_prio, which runc 1.1 dropped too)
        raise ConfigError(f"{where}.network: not supported by this runtime")
    return limits


def _devices(linux: dict[str, Any]) -> list[Device]:
    devices = list(DEFAULT_DEVICES)
    for index, entry in enumerate(_get(linux, "devices", list, "linux", [])):
        where = f"linux.devices[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected an object")
        path = _get(entry, "path", str, where, "")
        kind = _get(entry, "type", str, where, "")
        if not path.startswith("/dev/") or kind not in ("c", "b", "u", "p"):
            raise ConfigError(f"{where}: needs a path under /dev and a type c, b, u or p")
        devices.append(Device(path, kind, _get(entry, "major", int, where, 0), _get(entry, "minor", int, where, 0),
                              _get(entry, "fileMode", int, where, 0o666), _get(entry, "uid", int, where, 0),
                              _get(entry, "gid", int, where, 0)))
    return devices


_IPC_SYSCTLS = frozenset({"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                          "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"})


def _sysctl(linux: dict[str, Any], flags: int) -> list[tuple[str, str]]:
    """Only sysctls of a namespace the container has of its own: any other would
    change the host (runc's rules)."""
    result = []
    for key, value in _get(linux, "sysctl", dict, "linux", {}).items():
        if not isinstance(value, str):
            raise ConfigError(f"linux.sysctl.{key}: expected a string value")
        if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            needed, name = syscalls.CLONE_NEWIPC, "ipc"
        elif key.startswith("net."):
            needed, name = syscalls.CLONE_NEWNET, "network"
        elif key in ("kernel.domainname", "kernel.hostname"):
            needed, name = syscalls.CLONE_NEWUTS, "uts"
        else:
            raise ConfigError(f"linux.sysctl.{key}: not namespaced: setting it would change the host")
        if not flags & needed:
            raise ConfigError(f"linux.sysctl.{key}: needs a {name} namespace of the container's own")
        result.append((key, value))
    return result


def launch_spec(config: dict[str, Any], bundle: str, container_id: str, state_dir: str,
                systemd_cgroup: bool = False) -> LaunchSpec:
    """The launch spec of ``config``; refuses what it cannot carry out, naming the field."""
    from execdriver.native import parts
    from execdriver.native.spec import DEFAULT_CGROUP_PARENT, Namespaces, validate

    process = _get(config, "process", dict, "config", None)
    # The runtime spec wants a process only of start: without one, the container is
    # created with an init that runs nothing (argv []), and start refuses it (OciRuntime.start).
    proc, security = process_fields(process if process is not None else {"cwd": "/", "args": ["-"]})
    if process is None:
        proc.argv = []
    root = _get(config, "root", dict, "config", None)
    if root is None or not _get(root, "path", str, "root", ""):
        raise ConfigError("root.path: missing")
    root_path = root["path"] if os.path.isabs(root["path"]) else os.path.join(bundle, root["path"])
    linux = _get(config, "linux", dict, "config", {})
    for key, what in (("intelRdt", "Intel RDT"), ("mountLabel", "SELinux")):
        # Labels mean nothing on a host without SELinux: runc and crun drop them there.
        if linux.get(key) and (key != "mountLabel" or selinux_enabled()):
            raise ConfigError(f"linux.{key}: {what} is not supported by this runtime yet")
    flags, join = _namespaces(linux)
    uid_maps, gid_maps = _mappings(linux, "uidMappings"), _mappings(linux, "gidMappings")
    if bool(flags & syscalls.CLONE_NEWUSER) != bool(uid_maps or gid_maps):
        raise ConfigError("linux.uidMappings: id mappings and a user namespace go together: give both or neither")
    if os.geteuid() != 0 and not flags & syscalls.CLONE_NEWUSER:
        raise ConfigError("linux.namespaces: rootless container requires user namespaces "
                          "(a user without privileges is root only in a user namespace of its own)")
    hostname = _get(config, "hostname", str, "config", "")
    if hostname and not (flags & syscalls.CLONE_NEWUTS or any(t == syscalls.CLONE_NEWUTS for _, t in join)):
        # A joined one is the container's own as well (a pod's): runc sets the name there too.
        raise ConfigError("hostname: setting it needs a uts namespace of the container's own")
    cgroup_path = _get(linux, "cgroupsPath", str, "linux", "")
    if systemd_cgroup:  # (--systemd-cgroup) a scope made by systemd, runc's slice:prefix:name
        if not cgroup_path:
            cgroup_path = f":{DEFAULT_CGROUP_PARENT}:{container_id}"
        elif cgroup_path.count(":") != 2:
            raise ConfigError(f'linux.cgroupsPath: expected cgroupsPath to be of format "slice:prefix:name" '
                              f"for systemd cgroups, got {cgroup_path!r} instead")
    elif cgroup_path and not cgroup_path.startswith("/"):
        # runc's cgroupfs driver: a relative path is below the runtime's own cgroup; so is
        # slice:prefix:name (containerd passes it when it believes the kubelet uses systemd).
        cgroup_path = f"{cgroups.own_path()}/{cgroup_path}"
    limits = _limits(linux)  # (checked with the rest: spec.validate)
    mounts = [_mount(entry, index, bundle) for index, entry in enumerate(_get(config, "mounts", list, "config", []))]
    rootfs = parts.root_of(root_path)
    uids, gids, idmap = parts.user_namespace(uid_maps, gid_maps, rootfs)
    cgroup = parts.place_cgroup(container_id, cgroup_path, limits, joins_itself=not uids, systemd=systemd_cgroup)
    # (the compiled programs are kept beside the containers' states, as the API's: command.process_security)
    security.seccomp_bpf = seccomp_program(linux, os.path.join(os.path.dirname(os.path.abspath(state_dir)), ".seccomp"))
    security.seccomp_notify = bool(security.seccomp_bpf) and seccomp_listener(config) is not None
    spec = LaunchSpec(
        id=container_id,
        state_dir=state_dir,
        rootfs=root_path,
        process=proc,
        security=security,
        namespaces=Namespaces(flags, join=join, uid_mappings=uids, gid_mappings=gids, idmap_root=idmap,
                              hostname=hostname, domainname=_get(config, "domainname", str, "config", "")),
        filesystem=Filesystem(
            rootfs, state_dir, readonly=_get(root, "readonly", bool, "root", False), mounts=mounts,
            devices=_devices(linux),
            masked_paths=[p for p in _get(linux, "maskedPaths", list, "linux", []) if isinstance(p, str)],
            readonly_paths=[p for p in _get(linux, "readonlyPaths", list, "linux", []) if isinstance(p, str)],
            sysctl=_sysctl(linux, flags),
            propagation=PROPAGATION.get(_get(linux, "rootfsPropagation", str, "linux", ""), 0),
            cgroup_directory=cgroup.directory, cgroup_hierarchies=cgroup.hierarchies),
        cgroup=cgroup,
        # An OCI container outlives the command that created it.
        pdeathsig=False,
    )
    validate(spec, process_optional=process is None)
    return spec


