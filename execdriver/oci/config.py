"""An OCI bundle's config.json, read into the launch spec that the init carries out.

Every field of the runtime spec (1.x) that Linux gives is either carried
out or refused with a ConfigError that names it: nothing is dropped in
silence. Mount options are read as runc reads them.
"""

from __future__ import annotations

import os
import posixpath

from execdriver.errors import ConfigError
from execdriver.gojson import loads
from execdriver.linux import capabilities, cgroups, syscalls
from execdriver.linux.rootfs import DEFAULT_DEVICES, Mount

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# mount(8) options: name -> (flags to set, flags to clear)
MOUNT_FLAGS = {
    "async": (0, 0x10), "atime": (0, 0x400), "bind": (syscalls.MS_BIND, 0), "defaults": (0, 0),
    "dev": (0, syscalls.MS_NODEV), "diratime": (0, 0x800), "dirsync": (0x80, 0), "exec": (0, syscalls.MS_NOEXEC),
    "mand": (0x40, 0), "noatime": (0x400, 0), "nodev": (syscalls.MS_NODEV, 0), "nodiratime": (0x800, 0),
    "noexec": (syscalls.MS_NOEXEC, 0), "nomand": (0, 0x40), "norelatime": (0, 0x200000),
    "nostrictatime": (0, 0x1000000), "nosuid": (syscalls.MS_NOSUID, 0),
    "rbind": (syscalls.MS_BIND | syscalls.MS_REC, 0), "relatime": (0x200000, 0), "remount": (syscalls.MS_REMOUNT, 0),
    "ro": (syscalls.MS_RDONLY, 0), "rw": (0, syscalls.MS_RDONLY), "strictatime": (0x1000000, 0),
    "suid": (0, syscalls.MS_NOSUID), "sync": (0x10, 0),
}
_MS_SHARED, _MS_UNBINDABLE = 0x100000, 0x20000
PROPAGATION = {
    "private": syscalls.MS_PRIVATE, "shared": _MS_SHARED, "slave": syscalls.MS_SLAVE,
    "unbindable": _MS_UNBINDABLE,
}
PROPAGATION.update({"r" + name: value | syscalls.MS_REC for name, value in list(PROPAGATION.items())})
_NAMESPACES = {
    "pid": syscalls.CLONE_NEWPID, "network": syscalls.CLONE_NEWNET, "mount": syscalls.CLONE_NEWNS,
    "ipc": syscalls.CLONE_NEWIPC, "uts": syscalls.CLONE_NEWUTS, "cgroup": syscalls.CLONE_NEWCGROUP,
    "user": syscalls.CLONE_NEWUSER, "time": 0x80,
}
_RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4, "RLIMIT_RSS": 5,
    "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = None) -> Any:
    value = obj.get(key, default)
    if value is None:
        return default
    if (isinstance(value, bool) and kind is int) or not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ConfigError(f"{where}.{key}: expected {names}, got {type(value).__name__}")
    return value


def read_object(path: str, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; errors begin with ``what`` (config.json, --process)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"{what}: {path} does not exist") from None
    except OSError as err:
        raise ConfigError(f"{what}: {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{what}: not valid JSON: {err}") from None
    try:
        value = loads(text)
    except ValueError as err:
        raise ConfigError(f"{what}: not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what}: expected an object")
    return value


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
    flags = cleared = propagation = 0
    data = []
    recursive_ro = False
    for option in options:
        if not isinstance(option, str):
            raise ConfigError(f"{where}.options: expected strings")
        if option in MOUNT_FLAGS:
            add, clear = MOUNT_FLAGS[option]
            flags, cleared = (flags | add) & ~clear, (cleared | clear) & ~add
        elif option in PROPAGATION:
            propagation = PROPAGATION[option]
        elif option == "rro":
            flags, recursive_ro = flags | syscalls.MS_RDONLY, True
        elif option in ("tmpcopyup", "idmap", "ridmap") or option.startswith(("rro", "rrw", "rnosuid")):
            raise ConfigError(f"{where}.options: {option!r} is not supported")
        else:
            data.append(option)
    destination = posixpath.normpath(destination)
    if fstype == "bind" or flags & syscalls.MS_BIND:
        if not os.path.isabs(source):
            source = os.path.join(bundle, source)
        if not os.path.exists(source):
            raise ConfigError(f"{where}.source: {source} does not exist")
        real = os.path.realpath(source)
        bind_flags = syscalls.MS_BIND | (flags & syscalls.MS_REC)
        remount = flags & ~(syscalls.MS_BIND | syscalls.MS_REC | syscalls.MS_REMOUNT)
        if recursive_ro:
            bind_flags |= syscalls.MS_REC
        return (destination, real, "", bind_flags, ",".join(data), propagation, remount, os.path.isdir(real))
    if fstype == "cgroup":
        return (destination, "cgroup", "cgroup", flags, "", propagation, 0, True)
    if not fstype:
        raise ConfigError(f"{where}.type: a mount that is not a bind needs a type")
    return (destination, source or fstype, fstype, flags, ",".join(data), propagation, 0, True)


def _capabilities(process: dict[str, Any]) -> dict[str, list[int]]:
    sets = _get(process, "capabilities", dict, "process", {})
    result = {}
    for name in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        numbers = []
        for cap in _get(sets, name, list, "process.capabilities", []):
            number = capabilities.NUMBERS.get(cap) if isinstance(cap, str) else None
            if number is None:
                raise ConfigError(f"process.capabilities.{name}: unknown capability {cap!r}")
            if number <= capabilities.last_cap():
                numbers.append(number)
        result[name] = numbers
    return result


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
    if not flags & syscalls.CLONE_NEWNS and not any(t == syscalls.CLONE_NEWNS for _, t in join):
        raise ConfigError("linux.namespaces: a mount namespace is required (the rootfs is pivoted into)")
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


def _limits(linux: dict[str, Any]) -> dict[str, Any]:
    resources = _get(linux, "resources", dict, "linux", {})
    limits = resource_limits(resources)
    limits["device_rules"] = cgroups.device_rules(_device_rules(resources, "linux.resources"))
    return limits


def _selinux_enabled() -> bool:
    return os.path.exists("/sys/fs/selinux/enforce")


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
        access = _get(rule, "access", str, at, "") or "rwm"
        if not set(access) <= set("rwm"):
            raise ConfigError(f"{at}.access: letters of r, w and m only, got {access!r}")
        verdict = "allow" if rule["allow"] else "deny"
        if kind == "a" and set(access) != set("rwm"):
            # The kernel reads "a" as every access: a partial one is both kinds.
            rules += [(verdict, f"c *:* {access}"), (verdict, f"b *:* {access}")]
        elif kind == "a":
            rules.append((verdict, "a"))
        else:
            rules.append((verdict, f"{kind} {numbers[0]}:{numbers[1]} {access}"))
    return rules


def resource_limits(resources: dict[str, Any], where: str = "linux.resources") -> dict[str, Any]:
    """An OCI LinuxResources object as Limits fields; zero and absent mean unset."""
    limits: dict[str, Any] = {}
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
    for key in ("realtimeRuntime", "realtimePeriod", "burst"):
        if cpu.get(key):
            raise ConfigError(f"{where}.cpu.{key}: not supported by this runtime")
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


def _devices(linux: dict[str, Any]) -> list[tuple[str, str, int, int, int, int, int]]:
    devices = list(DEFAULT_DEVICES)
    for index, entry in enumerate(_get(linux, "devices", list, "linux", [])):
        where = f"linux.devices[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected an object")
        path = _get(entry, "path", str, where, "")
        kind = _get(entry, "type", str, where, "")
        if not path.startswith("/dev/") or kind not in ("c", "b", "u", "p"):
            raise ConfigError(f"{where}: needs a path under /dev and a type c, b, u or p")
        devices.append((path, kind, _get(entry, "major", int, where, 0), _get(entry, "minor", int, where, 0),
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


def _rlimits(process: dict[str, Any]) -> list[tuple[int, int, int]]:
    result = []
    for index, entry in enumerate(_get(process, "rlimits", list, "process", [])):
        where = f"process.rlimits[{index}]"
        kind = entry.get("type") if isinstance(entry, dict) else None
        if not isinstance(kind, str) or kind not in _RLIMITS:
            raise ConfigError(f"{where}.type: unknown rlimit {kind!r}")
        result.append((_RLIMITS[kind], _get(entry, "soft", int, where, 0), _get(entry, "hard", int, where, 0)))
    return result


def launch_spec(config: dict[str, Any], bundle: str, container_id: str, state_dir: str,
                systemd_cgroup: bool = False) -> dict[str, Any]:
    """The launch spec of ``config``; refuses what it cannot carry out, naming the field."""
    from execdriver.native import spec as native  # create and run only: exec needs none of it

    process = _get(config, "process", dict, "config", None)
    if process is None:
        raise ConfigError("process: missing (the container needs a process to run)")
    fields = process_fields(process)
    root = _get(config, "root", dict, "config", None)
    if root is None or not _get(root, "path", str, "root", ""):
        raise ConfigError("root.path: missing")
    root_path = root["path"] if os.path.isabs(root["path"]) else os.path.join(bundle, root["path"])
    linux = _get(config, "linux", dict, "config", {})
    for key, what in (("intelRdt", "Intel RDT"), ("mountLabel", "SELinux")):
        # Labels mean nothing on a host without SELinux: runc and crun drop them there.
        if linux.get(key) and (key != "mountLabel" or _selinux_enabled()):
            raise ConfigError(f"linux.{key}: {what} is not supported by this runtime yet")
    flags, join = _namespaces(linux)
    uid_maps, gid_maps = _mappings(linux, "uidMappings"), _mappings(linux, "gidMappings")
    if bool(flags & syscalls.CLONE_NEWUSER) != bool(uid_maps or gid_maps):
        raise ConfigError("linux.uidMappings: id mappings and a user namespace go together: give both or neither")
    hostname = _get(config, "hostname", str, "config", "")
    if hostname and not (flags & syscalls.CLONE_NEWUTS or any(t == syscalls.CLONE_NEWUTS for _, t in join)):
        # A joined one is the container's own as well (a pod's): runc sets the name there too.
        raise ConfigError("hostname: setting it needs a uts namespace of the container's own")
    cgroup_path = _get(linux, "cgroupsPath", str, "linux", "")
    if systemd_cgroup:  # (--systemd-cgroup) a scope made by systemd, runc's slice:prefix:name
        if not cgroup_path:
            cgroup_path = f":{native.DEFAULT_CGROUP_PARENT}:{container_id}"
        elif cgroup_path.count(":") != 2:
            raise ConfigError(f'linux.cgroupsPath: expected cgroupsPath to be of format "slice:prefix:name" '
                              f"for systemd cgroups, got {cgroup_path!r} instead")
    elif ":" in cgroup_path:
        raise ConfigError(f"linux.cgroupsPath: {cgroup_path!r} is a systemd path (slice:prefix:name): "
                          "it needs --systemd-cgroup")
    limits = _limits(linux)
    cgroups.Limits(**limits).check()
    mounts = [_mount(entry, index, bundle) for index, entry in enumerate(_get(config, "mounts", list, "config", []))]
    base = native.launch_spec(container_id=container_id, state_dir=state_dir, argv=fields["argv"], rootfs=root_path,
                              readonly=_get(root, "readonly", bool, "root", False), hostname=hostname,
                              working_dir=fields["cwd"], env=fields["env"], user=fields["user"], limits=limits,
                              cgroup_path=cgroup_path, uid_mappings=uid_maps, gid_mappings=gid_maps,
                              # The config's own seccomp and capabilities follow: no default profile here.
                              security={"seccomp_profile": "unconfined"})
    base.update({
        "clone_flags": flags,
        "join_namespaces": join,
        "mounts": mounts,
        "devices": _devices(linux),
        "masked_paths": [p for p in _get(linux, "maskedPaths", list, "linux", []) if isinstance(p, str)],
        "readonly_paths": [p for p in _get(linux, "readonlyPaths", list, "linux", []) if isinstance(p, str)],
        "domainname": _get(config, "domainname", str, "config", ""),
        "sysctl": _sysctl(linux, flags),
        **fields,
        "propagation": PROPAGATION.get(_get(linux, "rootfsPropagation", str, "linux", ""), 0),
        # An OCI container outlives the command that created it.
        "pdeathsig": False,
        "seccomp_bpf": _seccomp(linux),
    })
    return base


def process_fields(process: dict[str, Any], where: str = "process") -> dict[str, Any]:
    """A spec Process object as launch spec fields: the container's, or an exec'd one's."""
    terminal = _get(process, "terminal", bool, where, False)
    size = _get(process, "consoleSize", dict, where, {})
    console_size = (_get(size, "height", int, f"{where}.consoleSize", 0),
                    _get(size, "width", int, f"{where}.consoleSize", 0))
    apparmor = _get(process, "apparmorProfile", str, where, "")
    if apparmor:
        from execdriver.linux import apparmor_enabled

        if not apparmor_enabled():  # as runc refuses it
            raise ConfigError(f"{where}.apparmorProfile: AppArmor is not enabled on this host; "
                              f"cannot apply {apparmor!r}")
    if _get(process, "selinuxLabel", str, where, "") and _selinux_enabled():
        raise ConfigError(f"{where}.selinuxLabel: SELinux labels are not supported by this runtime yet")
    args = _get(process, "args", list, where, [])
    if not args or not all(isinstance(a, str) for a in args):
        raise ConfigError(f"{where}.args: needs at least the program to run, as strings")
    cwd = _get(process, "cwd", str, where, "")
    if not cwd.startswith("/"):
        raise ConfigError(f"{where}.cwd: {cwd!r} must be an absolute path")
    user = _get(process, "user", dict, where, {})
    uid, gid = _get(user, "uid", int, f"{where}.user", 0), _get(user, "gid", int, f"{where}.user", 0)
    extra_gids = _get(user, "additionalGids", list, f"{where}.user", [])
    if _get(user, "username", str, f"{where}.user", ""):
        raise ConfigError(f"{where}.user.username: only numeric users are supported on Linux")
    env = _get(process, "env", list, where, [])
    if not all(isinstance(e, str) for e in env):
        raise ConfigError(f"{where}.env: expected strings of the form KEY=VALUE")
    caps = _capabilities(process)
    return {
        "argv": list(args),
        "cwd": posixpath.normpath(cwd),
        "env": list(env),
        "user": f"{uid}:{gid}",
        "rlimits": _rlimits(process),
        "no_new_privileges": _get(process, "noNewPrivileges", bool, where, False),
        "oom_score_adj": _get(process, "oomScoreAdj", int, where, None),
        "umask": _get(user, "umask", int, f"{where}.user", None),
        "additional_gids": [g for g in extra_gids if isinstance(g, int)],
        "capabilities": caps["permitted"],
        "capability_sets": caps,
        "terminal": terminal,
        "console_size": console_size,
        "apparmor_profile": apparmor,  # (the init asks for it on exec: /proc/self/attr/apparmor/exec)
    }


def exec_spec(process: dict[str, Any], config: dict[str, Any], program: bytes | None = None) -> dict[str, Any]:
    """An exec'd process's launch spec fields: its own Process, the container's seccomp.

    ``program``: the container's compiled seccomp program as create kept it
    (b"": none); None compiles the config's profile again.
    """
    fields = process_fields(process)
    if program is None:
        program = _seccomp(_get(config, "linux", dict, "config", {}))
    fields["seccomp_bpf"] = program or None
    fields["last_cap"] = capabilities.last_cap()
    return fields


def _seccomp(linux: dict[str, Any]) -> bytes | None:
    """The profile compiled here, once; the init only loads the program."""
    profile = _get(linux, "seccomp", dict, "linux", None)
    if not profile:
        return None
    from execdriver.linux import seccomp

    return seccomp.compile_oci(profile)
