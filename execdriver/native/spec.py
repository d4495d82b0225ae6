"""From a Command to the launch spec that the container's init carries out.

Every check that can be made on the host happens here, before anything is
created, so bad input fails with a ConfigError that names the field and
leaves nothing behind. The spec is plain JSON data: it crosses to the fork
server as it is. Nothing here needs the api module at run time, so the
CLI's start path never imports dataclasses.
"""

from __future__ import annotations

import os
import posixpath

from execdriver.errors import ConfigError
from execdriver.linux import capabilities, cgroups, syscalls
from execdriver.linux import rootfs as rootfs_module
from execdriver.linux.cgroups import Limits
from execdriver.linux.rootfs import (
    DEFAULT_DEVICES,
    HOST_VIEW_SKIP,
    MASKED_PATHS,
    READONLY_PATHS,
    Mount,
    bind,
    default_mounts,
    special,
)
from execdriver.linux.syscalls import MS_NODEV, MS_NOSUID
from execdriver.native.init import DEFAULT_PATH

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from execdriver.api import Command, ProcessConfig, Resources
    from execdriver.native.state import StateStore

DEFAULT_CGROUP_PARENT = "execdriver"
CLONE_FLAGS = (
    syscalls.CLONE_NEWNS
    | syscalls.CLONE_NEWUTS
    | syscalls.CLONE_NEWIPC
    | syscalls.CLONE_NEWPID
    | syscalls.CLONE_NEWNET
)


def _unsupported(command: Command) -> None:
    if command.hv_partition:
        raise ConfigError("hv_partition: Hyper-V partitions need Windows; Linux runs containers as processes")
    if command.isolation.lower() not in ("", "default", "process"):
        raise ConfigError(
            f"isolation: {command.isolation!r} is not available on Linux "
            "(Hyper-V isolation needs Windows); use 'process' or 'default'"
        )
    for name in ("mount_label", "process_label"):
        if getattr(command, name) and not os.path.exists("/sys/fs/selinux/enforce"):
            raise ConfigError(f"{name}: SELinux labels need SELinux, which this host does not have")
        if getattr(command, name):
            raise ConfigError(f"{name}: SELinux labels are not supported by this driver yet")


def _root(rootfs: str, layer_paths: list[str] | None, layer_folder: str) -> dict[str, Any]:
    if rootfs:
        path = os.path.abspath(rootfs)
        if path == "/":
            entries = []
            for entry in sorted(os.scandir("/"), key=lambda e: e.name):
                if entry.name in HOST_VIEW_SKIP:
                    continue
                link = os.readlink(entry.path) if entry.is_symlink() else None
                entries.append((entry.name, link))
            return {"kind": "host", "entries": entries}
        if not os.path.isdir(path):
            raise ConfigError(f"rootfs: {rootfs} does not exist or is not a directory")
        return {"kind": "dir", "path": os.path.realpath(path)}
    if not layer_paths:
        raise ConfigError("rootfs: no root filesystem given (set rootfs, or layer_paths and layer_folder)")
    for index, layer in enumerate(layer_paths):
        if not os.path.isdir(layer):
            raise ConfigError(f"layer_paths[{index}]: {layer} does not exist or is not a directory")
    lower = ":".join(os.path.realpath(p) for p in layer_paths)
    if not layer_folder:
        if len(layer_paths) == 1:
            return {"kind": "dir", "path": os.path.realpath(layer_paths[0])}
        return {"kind": "overlay", "options": f"lowerdir={lower}"}
    folder = os.path.realpath(layer_folder)
    if not os.path.isdir(folder):
        raise ConfigError(f"layer_folder: {layer_folder} does not exist or is not a directory")
    for sub in ("diff", "work"):
        os.makedirs(os.path.join(folder, sub), mode=0o755, exist_ok=True)
    return {
        "kind": "overlay",
        "options": f"lowerdir={lower},upperdir={folder}/diff,workdir={folder}/work",
    }


def _mounts(mounts: list[tuple[str, str, bool]], tmpdir: str, host_view: bool) -> list[Mount]:
    """Docker's standard mounts, a fresh /tmp and /run on the host view, then the binds."""
    result = default_mounts()
    if host_view:
        if not tmpdir:
            result.append(special("/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"))
        result.append(special("/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755"))
    for index, (source, destination, writable) in enumerate(mounts):
        where = f"mounts[{index}]"
        if not source or not os.path.exists(source):
            raise ConfigError(f"{where}.source: {source!r} does not exist")
        if not destination.startswith("/"):
            raise ConfigError(f"{where}.destination: {destination!r} is not an absolute path")
        target = posixpath.normpath(destination)
        if target == "/":
            raise ConfigError(f"{where}.destination: cannot mount over the container's root")
        real = os.path.realpath(source)
        result.append(bind(real, target, writable=writable, is_dir=os.path.isdir(real)))
    if tmpdir:
        if not os.path.isdir(tmpdir):
            raise ConfigError(f"tmpdir: {tmpdir} does not exist or is not a directory")
        result.append(bind(os.path.realpath(tmpdir), "/tmp", writable=True, is_dir=True))
    return result


def _env(env: list[str] | None, hostname: str) -> list[str]:
    result = list(env) if env is not None else []
    for index, entry in enumerate(result):
        if "=" not in entry or entry.startswith("="):
            raise ConfigError(f"process_config.env[{index}]: {entry!r} is not KEY=VALUE")
    if not any(e.startswith("PATH=") for e in result):
        result.insert(0, f"PATH={DEFAULT_PATH}")
    if hostname and not any(e.startswith("HOSTNAME=") for e in result):
        result.append(f"HOSTNAME={hostname}")
    return result


def launch_spec(
    *,
    container_id: str,
    state_dir: str,
    argv: list[str],
    rootfs: str = "",
    readonly: bool = False,
    layer_paths: list[str] | None = None,
    layer_folder: str = "",
    mounts: list[tuple[str, str, bool]] | None = None,
    tmpdir: str = "",
    hostname: str = "",
    working_dir: str = "",
    env: list[str] | None = None,
    user: str = "",
    privileged: bool = False,
    limits: dict[str, Any] | None = None,
    cgroup_path: str = "",
    network: dict[str, Any] | None = None,
    security: dict[str, Any] | None = None,
    uid_mappings: list[Any] | None = None,
    gid_mappings: list[Any] | None = None,
    init: bool = False,
) -> dict[str, Any]:
    """Validate a container's settings and turn them into the init's launch spec.

    Errors name the Command field at fault. The CLI calls this directly:
    it need not build a Command (dataclasses cost milliseconds to import).
    """
    cwd = _checked_process(argv, working_dir)
    if len(hostname.encode()) > 64:
        raise ConfigError("hostname: longer than 64 bytes")
    root = _root(rootfs, layer_paths, layer_folder)
    last_cap = capabilities.last_cap()
    Limits(**(limits or {})).check()
    clone_flags = CLONE_FLAGS
    networking: dict[str, Any] = {}
    if network is not None:
        networking = {"network": network}
        if network["mode"] in ("host", "container"):
            clone_flags &= ~syscalls.CLONE_NEWNET
        if network["mode"] == "container":
            networking["join_namespaces"] = [(f"/proc/{network['target'][0]}/ns/net", syscalls.CLONE_NEWNET)]
    if os.geteuid() != 0 and not uid_mappings and not gid_mappings:
        # Rootless: the user's own ids are the container's root.
        uid_mappings, gid_mappings = [(0, os.geteuid(), 1)], [(0, os.getegid(), 1)]
        if network is not None and network["mode"] == "bridge":
            raise ConfigError("network.interface: a bridge needs root; a user without privileges has loopback alone")
    if init:
        argv = [rootfs_module.INIT_PATH, "--", *argv]
    users = user_namespace(uid_mappings, gid_mappings, root)
    if users:
        clone_flags |= syscalls.CLONE_NEWUSER
    extra_mounts = []
    if network is not None and network.get("files"):
        from execdriver.linux.network import etc

        extra_mounts = etc.mounts(network["files"], ("hosts", "resolv.conf"))
    return {
        **networking,
        **({"init_binary": _init_binary()} if init else {}),
        "id": container_id,
        "state_dir": state_dir,
        "rootfs": rootfs,
        "clone_flags": clone_flags,
        # The root is assembled on the state directory itself, inside the
        # container's private mount namespace: the host never sees it.
        "mountpoint": state_dir,
        "root": root,
        "readonly": readonly,
        "mounts": _mounts(mounts or [], tmpdir, root["kind"] == "host") + extra_mounts,
        "devices": list(DEFAULT_DEVICES),
        **_paths(privileged, security or {}),
        "hostname": hostname,
        "argv": argv,
        "env": _env(env, hostname),
        "user": user,
        "cwd": cwd,
        **process_security(privileged, security or {}, state_dir),
        "last_cap": last_cap,
        "cgroup": _cgroup(container_id, cgroup_path, limits or {}, joins_itself=not users),
        **users,
    }


INIT_BINARY = "/usr/bin/tini-static"  # Debian's tini: what docker run --init runs as the container's pid 1


def _init_binary() -> str:
    if not os.access(INIT_BINARY, os.X_OK):
        raise ConfigError(f"init: {INIT_BINARY} is missing (Debian's tini package installs it)")
    return INIT_BINARY


def user_namespace(uid_mappings: list[Any] | None, gid_mappings: list[Any] | None,
                   root: dict[str, Any]) -> dict[str, Any]:
    """The launch spec's user namespace fields: none without mappings."""
    if not uid_mappings and not gid_mappings:
        return {}
    from execdriver.linux import userns

    uids = userns.parse(uid_mappings, "uid_mapping")
    gids = userns.parse(gid_mappings, "gid_mapping")
    if userns.host_id(uids, 0) is None or userns.host_id(gids, 0) is None:
        raise ConfigError("uid_mapping: the container's root (uid and gid 0) must be mapped")
    if root["kind"] == "overlay":
        raise ConfigError("layer_paths: an overlay root in a user namespace is not supported yet; use rootfs")
    # A rootfs whose owner the namespace does not map (the host's root's, as
    # images unpack) shows as the remapped root's through an id-mapped mount
    # (userns.idmapped_root); one chowned for the mapping (as engines do) is used as it is.
    idmap = False
    if root["kind"] == "dir" and os.geteuid() == 0:
        owner = os.stat(root["path"]).st_uid
        idmap = not any(host <= owner < host + size for _, host, size in uids)
    return {"uid_mappings": uids, "gid_mappings": gids, "idmap_root": idmap}


def _paths(privileged: bool, security: dict[str, Any]) -> dict[str, list[str]]:
    result = {}
    for field, default in (("masked_paths", MASKED_PATHS), ("readonly_paths", READONLY_PATHS)):
        paths = security.get(field)
        if paths is None:
            result[field] = [] if privileged else list(default)
            continue
        for index, path in enumerate(paths):
            if not isinstance(path, str) or not path.startswith("/"):
                raise ConfigError(f"{field}[{index}]: {path!r} is not an absolute path")
        result[field] = list(paths)
    return result


def process_security(privileged: bool, security: dict[str, Any], state_dir: str) -> dict[str, Any]:
    """Capabilities, seccomp program, no_new_privileges, rlimits, oom_score_adj, umask, AppArmor.

    ``security`` holds Docker's names: cap_add, cap_drop, seccomp_profile
    ("", "unconfined" or Docker's JSON), no_new_privileges, rlimits
    ([type, soft, hard]), oom_score_adj, umask, apparmor_profile. A
    privileged process keeps every capability and has no seccomp filter.
    """
    if privileged:
        caps = capabilities.available()
    else:
        caps = capabilities.adjust(list(capabilities.DEFAULT), security.get("cap_add"), security.get("cap_drop"))
    result: dict[str, Any] = {"capabilities": caps}
    profile = security.get("seccomp_profile", "")
    if not privileged and profile != "unconfined":
        from execdriver.linux import seccomp

        cache = os.path.join(os.path.dirname(os.path.abspath(state_dir)), ".seccomp")
        result["seccomp_bpf"] = seccomp.program(profile, caps, cache_dir=cache)
        # Docker's default profile answers what it denies with an errno, never a kill: a warm
        # sandbox, whose filter is loaded ahead, may still make calls of its own (pool.prepare).
        result["seccomp_lenient"] = not profile
    if security.get("no_new_privileges"):
        result["no_new_privileges"] = True
    rlimits = []
    for index, (kind, soft, hard) in enumerate(security.get("rlimits") or ()):
        if soft > hard:
            raise ConfigError(f"resources.rlimits[{index}]: soft {soft} is above hard {hard}")
        rlimits.append((kind, soft, hard))
    if rlimits:
        result["rlimits"] = rlimits
    if security.get("oom_score_adj") is not None:
        result["oom_score_adj"] = security["oom_score_adj"]
    umask = security.get("umask")
    result["umask"] = 0o022 if umask is None else umask
    if security.get("apparmor_profile"):
        result["apparmor_profile"] = _apparmor(security["apparmor_profile"])
    return result


def _apparmor(profile: str) -> str:
    from execdriver.linux import apparmor_enabled

    if not apparmor_enabled():
        raise ConfigError(f"apparmor_profile: AppArmor is not enabled on this host; cannot apply {profile!r}")
    return profile


def _cgroup(container_id: str, path: str, limits: dict[str, Any], joins_itself: bool = True) -> dict[str, Any]:
    """Where the cgroup goes, and how many of its parents its removal may take when empty.

    Those are the runtime's own parent, or the parents of an engine's
    path that no one has made yet: containerd's ``/<namespace>/<id>``
    makes a namespace cgroup that nothing else would remove (runc leaves
    it behind). A parent that exists already is its maker's.

    ``join`` lists, on cgroup v1, each hierarchy's mount point and the path
    of the container's ``tasks`` file in it: the init joins them itself.
    An init in a user namespace cannot write the host's root-owned files:
    the runtime moves it (``joins_itself`` False).
    """
    if not path and os.geteuid() != 0:
        delegated = cgroups.delegated_subtree()
        if delegated:  # cgroup v2 under systemd: the user's own subtree (the runtime moves the init)
            path = f"{delegated}/{DEFAULT_CGROUP_PARENT}/{container_id}"
            return {"path": path, "directory": path, "parent_levels": cgroups.manager(path).missing_ancestors(),
                    "limits": _users_limits(limits), "join": [], "hierarchies": []}
        # Without privileges there is no cgroup to make here: the container stays in ours.
        asked = [name for name, value in limits.items() if value and name != "device_rules"]
        if asked:
            raise ConfigError(f"resources.{asked[0]}: limits need a cgroup, and {cgroups.why_no_cgroup()}")
        return {"path": "", "directory": "", "parent_levels": 0, "limits": {}, "join": [], "hierarchies": []}
    if ":" in path:
        return _systemd_cgroup(container_id, path, limits)
    if not path:
        path, parent_levels = f"{DEFAULT_CGROUP_PARENT}/{container_id}", 1
    elif ".." in path.split("/") or not path.strip("/"):
        raise ConfigError(f"cgroup_parent: {path!r} does not name a cgroup below the root")
    else:
        path = path.strip("/")
        parent_levels = cgroups.manager(path).missing_ancestors()
    hierarchies: list[str] = []
    if cgroups.version() == 1:
        from execdriver.linux.cgroups.v1 import mounts

        hierarchies = list(dict.fromkeys(mounts().values()))
    join = [(mount, f"{path}/tasks") for mount in hierarchies] if joins_itself else []
    return {"path": path, "directory": path, "parent_levels": parent_levels, "limits": limits, "join": join,
            "hierarchies": hierarchies}


def _systemd_cgroup(container_id: str, path: str, limits: dict[str, Any]) -> dict[str, Any]:
    """A scope that systemd makes (``slice:prefix:name``, the name defaulting to the id); the runtime moves the init."""
    from execdriver.linux.cgroups import systemd

    if cgroups.version() == 1:
        raise ConfigError(f"cgroupsPath {path!r}: the systemd cgroup driver needs cgroup v2 (this host has v1)")
    try:
        systemd.split(path, container_id)  # (refuses what is not slice:prefix:name)
        slice_name, prefix, name = path.split(":")
        path = f"{slice_name}:{prefix}:{name or container_id}"
        manager = systemd.SystemdManager(path)
    except cgroups.CgroupError as err:
        raise ConfigError(str(err)) from None
    return {"path": path, "directory": manager.path, "parent_levels": 0, "limits": _users_limits(limits),
            "join": [], "hierarchies": []}


def _users_limits(limits: dict[str, Any]) -> dict[str, Any]:
    """A user's without the device rules: it can load no device program, and its user namespace makes no node."""
    return {k: v for k, v in limits.items() if k != "device_rules"} if os.geteuid() != 0 else limits


def _checked_process(argv: list[str], working_dir: str) -> str:
    """Refuse what no process can run with; the working directory, normalised."""
    if not argv or not argv[0]:
        raise ConfigError("process_config.entrypoint: no command to run")
    if any("\0" in a for a in argv):
        raise ConfigError("process_config.arguments: NUL byte in an argument")
    working_dir = working_dir or "/"
    if not working_dir.startswith("/"):
        raise ConfigError(f"working_dir: {working_dir!r} must be an absolute path inside the rootfs")
    return posixpath.normpath(working_dir)


def exec_spec(command: Command, config: ProcessConfig, state_dir: str) -> dict[str, Any]:
    """The launch spec fields of a process exec'd into ``command``'s running container."""
    argv = [config.entrypoint, *(config.arguments or ())]
    cwd = _checked_process(argv, command.working_dir)
    return {
        "id": command.id,
        "argv": argv,
        "env": _env(config.env, command.hostname),
        "user": config.user,
        "cwd": cwd,
        **process_security(config.privileged, security_of(command), state_dir),
        "last_cap": capabilities.last_cap(),
        **_terminal(config),
    }


def security_of(command: Command) -> dict[str, Any]:
    """The security fields of ``command`` as process_security takes them."""
    resources = command.resources
    return {
        "cap_add": command.cap_add, "cap_drop": command.cap_drop, "seccomp_profile": command.seccomp_profile,
        "no_new_privileges": command.no_new_privileges, "oom_score_adj": command.oom_score_adj or None,
        "umask": command.umask, "apparmor_profile": command.apparmor_profile,
        "rlimits": [(r.type, r.soft, r.hard) for r in (resources.rlimits if resources else None) or ()],
        "masked_paths": command.masked_paths, "readonly_paths": command.readonly_paths,
    }


def _terminal(config: ProcessConfig) -> dict[str, Any]:
    """A tty process gets its pty from the container; stdin (a TtyConsole's socket) takes the master back."""
    if not config.tty:
        return {}
    height, width = config.console_size
    if height < 0 or width < 0:
        raise ConfigError("process_config.console_size: height and width must not be negative")
    return {"terminal": True, "console_socket": 0, "console_size": (height, width)}


def limits_of(resources: Resources | None) -> dict[str, Any]:
    """The set fields of ``resources``, as the cgroup managers take them."""
    if resources is None:
        return {}
    # Docker's Resources has no swappiness or TCP memory: those come only from OCI specs.
    return {name: getattr(resources, name) for name in Limits.FIELDS if getattr(resources, name, None)}


def network_of(command: Command) -> dict[str, Any] | None:
    """The launch spec's network entry for ``command.network`` (linux/network/config.py)."""
    network = command.network
    if network is None:
        return None
    from execdriver.linux.network import config

    interface = network.interface
    port_map: dict[str, list[dict[str, str]] | None] | None = None
    if interface is not None and interface.port_bindings:
        port_map = {key: [{"HostIp": b.host_ip, "HostPort": b.host_port} for b in bindings or ()]
                    for key, bindings in interface.port_bindings.items()}
    return config.parse(host=network.host_networking, container_id=network.container_id,
                        bridge=interface.bridge if interface is not None else None,
                        ip=interface.ip_address if interface is not None else "",
                        mac=interface.mac_address if interface is not None else "",
                        mtu=network.mtu, port_map=port_map)


def complete_network(network: dict[str, Any] | None, store: StateStore,
                     pool: tuple[str, int] | None = None) -> dict[str, Any] | None:
    """What only the runtime knows of a network: the joined container's init and files, the pool."""
    if network is None:
        return None
    if network["mode"] == "container":
        from execdriver.errors import NotRunningError
        from execdriver.linux.network import files_of

        joined = network["container"]
        try:
            state = store.load_running(joined)
        except (NotRunningError, ValueError):
            raise ConfigError(f"network.container_id: container {joined} is not running") from None
        network["target"] = [state.pid, state.pid_start]
        network["files"] = files_of(os.path.abspath(store.root), joined)
    elif network["mode"] == "bridge" and pool is not None:
        network["pool"] = list(pool)
    return network


def build(command: Command, state_dir: str, network: dict[str, Any] | None = None,
          systemd_cgroup: bool = False) -> dict[str, Any]:
    """The launch spec of ``command``, or a ConfigError naming the field.

    ``network`` is network_of(command), completed by the driver: the joined
    container's pid, the subnet pool. With ``systemd_cgroup`` the cgroup is
    a scope ``execdriver-<id>.scope`` in the slice ``cgroup_parent`` names
    (system.slice by default), as Docker's systemd driver places one.
    """
    if systemd_cgroup:
        cgroup_path = f"{command.cgroup_parent or ''}:{DEFAULT_CGROUP_PARENT}:{command.id}"
    else:
        cgroup_path = f"{command.cgroup_parent.strip('/')}/{command.id}" if command.cgroup_parent else ""
    _unsupported(command)
    config = command.process_config
    return {**launch_spec(
        container_id=command.id,
        state_dir=state_dir,
        argv=[config.entrypoint, *(config.arguments or ())],
        rootfs=command.rootfs,
        readonly=command.readonly_rootfs,
        layer_paths=command.layer_paths,
        layer_folder=command.layer_folder,
        mounts=[(m.source, m.destination, m.writable) for m in command.mounts or ()],
        tmpdir=command.tmpdir,
        hostname=command.hostname,
        working_dir=command.working_dir,
        env=config.env,
        user=config.user,
        privileged=config.privileged,
        limits={**limits_of(command.resources), "device_rules": list(
            cgroups.ALLOW_ALL_DEVICES if config.privileged else cgroups.device_rules([]))},
        cgroup_path=cgroup_path,
        network=network,
        security=security_of(command),
        uid_mappings=[(m.container_id, m.host_id, m.size) for m in command.uid_mapping or ()],
        gid_mappings=[(m.container_id, m.host_id, m.size) for m in command.gid_mapping or ()],
        init=command.init,
    ), **_terminal(config)}
