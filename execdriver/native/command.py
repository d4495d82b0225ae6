"""From a Command (or the sandbox command's flags) to the launch spec: the API's converter.

Every check that can be made on the host happens here or in
spec.validate, before anything is created, so bad input fails with a
ConfigError that names the Command's field and leaves nothing behind.
:func:`launch_spec` takes plain keywords, so that the CLI's ``sandbox``
need not build a Command (dataclasses cost milliseconds to import);
:func:`build` reads a Command into them.
"""

from __future__ import annotations

import os
import posixpath

from execdriver.errors import ConfigError
from execdriver.linux import capabilities, syscalls
from execdriver.linux.cgroups import Limits
from execdriver.linux.devices import ALLOW_ALL_DEVICES, DEFAULT_DEVICES, device_rules
from execdriver.linux.filesystem import (
    INIT_PATH,
    MASKED_PATHS,
    READONLY_PATHS,
    Filesystem,
    Mount,
    bind,
    default_mounts,
    special,
)
from execdriver.linux.syscalls import MS_NODEV, MS_NOSUID, MS_PRIVATE, MS_REC
from execdriver.native.parts import place_cgroup, root_of, user_namespace
from execdriver.native.spec import (
    CLONE_FLAGS,
    DEFAULT_CGROUP_PARENT,
    DEFAULT_PATH,
    ExecSpec,
    LaunchSpec,
    Namespaces,
    Process,
    Security,
    check_process,
    validate,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from execdriver.api import Command, ProcessConfig, Resources
    from execdriver.linux.network import Network
    from execdriver.native.spec import Mapping
    from execdriver.native.state import StateStore

INIT_BINARY = "/usr/bin/tini-static"  # Debian's tini: what docker run --init runs as the container's pid 1


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


def _mounts(mounts: list[tuple[str, str, bool]], tmpdir: str, host_view: bool, tmp_size: int | None) -> list[Mount]:
    """Docker's standard mounts, a fresh /tmp (the host view's, or any root's with ``tmp_size``) and
    /run on the host view, then the binds."""
    result = default_mounts()
    if not tmpdir and (host_view or tmp_size is not None):
        result.append(special("/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={tmp_size}" if tmp_size
                              else "mode=1777"))
    if host_view:
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
        volume = bind(real, target, writable=writable, is_dir=os.path.isdir(real))
        volume.propagation = MS_REC | MS_PRIVATE  # Docker's default for a volume: the host's later mounts stay out
        result.append(volume)
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
    tmp_size: int | None = None,
    hostname: str = "",
    working_dir: str = "",
    env: list[str] | None = None,
    user: str = "",
    privileged: bool = False,
    limits: Limits | None = None,
    cgroup_path: str = "",
    systemd_cgroup: bool = False,
    network: Network | None = None,
    security: Security | None = None,
    masked_paths: list[str] | None = None,
    readonly_paths: list[str] | None = None,
    uid_mappings: list[Mapping] | None = None,
    gid_mappings: list[Mapping] | None = None,
    init: bool = False,
    terminal: tuple[int, int] | None = None,
) -> LaunchSpec:
    """Validate a container's settings and turn them into its launch spec.

    Errors name the Command field at fault. ``security`` defaults to
    Docker's (process_security); ``terminal``: the console size of a
    process that gets a pty (its master goes back over stdin, a socket);
    ``tmp_size``: a fresh tmpfs /tmp of that many bytes (0: unsized) in any
    root, where None gives one to the host view alone.
    """
    size = terminal or (0, 0)
    if size[0] < 0 or size[1] < 0:
        raise ConfigError("process_config.console_size: height and width must not be negative")
    process = Process(argv, [], user, _checked_cwd(working_dir), terminal=terminal is not None,
                      console_socket=0 if terminal is not None else -1, console_size=size)
    check_process(process)
    if len(hostname.encode()) > 64:
        raise ConfigError("hostname: longer than 64 bytes")
    root = root_of(rootfs, layer_paths, layer_folder)
    if limits is None:  # the devices cgroup, at least: CAP_MKNOD makes any node, this decides what opens
        limits = Limits(device_rules=default_device_rules(privileged))
    clone_flags = CLONE_FLAGS
    join: list[tuple[str, int]] = []
    if network is not None:
        if not network.unshares:
            clone_flags &= ~syscalls.CLONE_NEWNET
        if network.mode == "container" and network.target is not None:
            join.append((f"/proc/{network.target[0]}/ns/net", syscalls.CLONE_NEWNET))
    if os.geteuid() != 0 and not uid_mappings and not gid_mappings:
        # Rootless: the user's own ids are the container's root.
        uid_mappings, gid_mappings = [(0, os.geteuid(), 1)], [(0, os.getegid(), 1)]
        if network is not None and network.mode == "bridge":
            raise ConfigError("network.interface: a bridge needs root; a user without privileges has loopback alone")
    if init:
        process.argv = [INIT_PATH, "--", *argv]
    uids, gids, idmap = user_namespace(uid_mappings, gid_mappings, root)
    if uids:
        clone_flags |= syscalls.CLONE_NEWUSER
    all_mounts = _mounts(mounts or [], tmpdir, root.kind == "host", tmp_size)
    if network is not None and network.files:
        from execdriver.linux.network import etc

        all_mounts += etc.mounts(network.files, ("hosts", "resolv.conf"))
    cgroup = place_cgroup(container_id, cgroup_path, limits, joins_itself=not uids, systemd=systemd_cgroup,
                          unified=False)
    process.env = _env(env, hostname)
    spec = LaunchSpec(
        id=container_id,
        state_dir=state_dir,
        rootfs=rootfs,
        process=process,
        security=security if security is not None else process_security(privileged, state_dir),
        namespaces=Namespaces(clone_flags, join=join, uid_mappings=uids, gid_mappings=gids, idmap_root=idmap,
                              hostname=hostname),
        # The root is assembled on the state directory itself, inside the
        # container's private mount namespace: the host never sees it.
        filesystem=Filesystem(
            root, state_dir, readonly=readonly, mounts=all_mounts, devices=list(DEFAULT_DEVICES),
            masked_paths=_paths("masked_paths", masked_paths, MASKED_PATHS, privileged),
            readonly_paths=_paths("readonly_paths", readonly_paths, READONLY_PATHS, privileged),
            init_binary=_init_binary() if init else "", cgroup_directory=cgroup.directory,
            cgroup_hierarchies=cgroup.hierarchies),
        cgroup=cgroup,
        network=network,
    )
    validate(spec)
    return spec


def default_device_rules(privileged: bool) -> list[tuple[str, str]]:
    """Every device for a privileged container; else the default rules (devices.py)."""
    return list(ALLOW_ALL_DEVICES) if privileged else device_rules([])


def _init_binary() -> str:
    if not os.access(INIT_BINARY, os.X_OK):
        raise ConfigError(f"init: {INIT_BINARY} is missing (Debian's tini package installs it)")
    return INIT_BINARY


def _paths(field: str, paths: list[str] | None, default: tuple[str, ...], privileged: bool) -> list[str]:
    if paths is None:
        return [] if privileged else list(default)
    for index, path in enumerate(paths):
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigError(f"{field}[{index}]: {path!r} is not an absolute path")
    return list(paths)


def process_security(privileged: bool, state_dir: str, *, cap_add: list[str] | None = None,
                     cap_drop: list[str] | None = None, seccomp_profile: str = "", no_new_privileges: bool = False,
                     rlimits: list[tuple[int, int, int]] | None = None, oom_score_adj: int | None = None,
                     umask: int | None = None, apparmor_profile: str = "") -> Security:
    """Docker's defaults, with Docker's names for what changes them.

    ``seccomp_profile``: "" (Docker's default), "unconfined" or Docker's
    JSON. A privileged process keeps every capability and has no seccomp
    filter.
    """
    if privileged:
        caps = capabilities.available()
    else:
        caps = capabilities.adjust(list(capabilities.DEFAULT), cap_add, cap_drop)
    program = None
    if not privileged and seccomp_profile != "unconfined":
        from execdriver.linux import seccomp

        cache = os.path.join(os.path.dirname(os.path.abspath(state_dir)), ".seccomp")
        program = seccomp.program(seccomp_profile, caps, cache_dir=cache)
    return Security(
        caps, capabilities.last_cap(), seccomp_bpf=program,
        # Docker's default profile answers what it denies with an errno, never a kill: a warm
        # sandbox, whose filter is loaded ahead, may still make calls of its own (pool.prepare).
        seccomp_lenient=program is not None and not seccomp_profile,
        no_new_privileges=no_new_privileges, rlimits=list(rlimits or ()), oom_score_adj=oom_score_adj,
        umask=0o022 if umask is None else umask, apparmor_profile=_apparmor(apparmor_profile))


def _apparmor(profile: str) -> str:
    if not profile:
        return ""
    from execdriver.linux import apparmor_enabled

    if not apparmor_enabled():
        raise ConfigError(f"apparmor_profile: AppArmor is not enabled on this host; cannot apply {profile!r}")
    return profile


def _checked_cwd(working_dir: str) -> str:
    working_dir = working_dir or "/"
    if not working_dir.startswith("/"):
        raise ConfigError(f"working_dir: {working_dir!r} must be an absolute path inside the rootfs")
    return posixpath.normpath(working_dir)


def exec_spec(command: Command, config: ProcessConfig, state_dir: str) -> ExecSpec:
    """A process exec'd into ``command``'s running container (its init and cgroup come later)."""
    height, width = config.console_size if config.tty else (0, 0)
    if height < 0 or width < 0:
        raise ConfigError("process_config.console_size: height and width must not be negative")
    process = Process([config.entrypoint, *(config.arguments or ())], _env(config.env, command.hostname),
                      config.user, _checked_cwd(command.working_dir), terminal=config.tty,
                      console_socket=0 if config.tty else -1, console_size=(height, width))
    security = security_of(command, config.privileged, state_dir)
    check_process(process, security.rlimits)
    return ExecSpec(command.id, process, security)


def security_of(command: Command, privileged: bool, state_dir: str) -> Security:
    """The Command's security fields, on Docker's defaults."""
    resources = command.resources
    return process_security(
        privileged, state_dir, cap_add=command.cap_add, cap_drop=command.cap_drop,
        seccomp_profile=command.seccomp_profile, no_new_privileges=command.no_new_privileges,
        oom_score_adj=command.oom_score_adj or None, umask=command.umask, apparmor_profile=command.apparmor_profile,
        rlimits=[(r.type, r.soft, r.hard) for r in (resources.rlimits if resources else None) or ()])


def limits_of(resources: Resources | None, *, devices: list[tuple[str, str]] | None = None) -> Limits:
    """The set fields of ``resources`` as the cgroup managers take them; ``devices``: the device rules."""
    values = {}
    if resources is not None:
        # Docker's Resources has no swappiness or TCP memory: those come only from OCI specs.
        values = {name: getattr(resources, name) for name in Limits.FIELDS if getattr(resources, name, None)}
    if devices is not None:
        values["device_rules"] = devices
    return Limits(**values)


def network_of(command: Command) -> Network | None:
    """The Command's network (linux/network/config.py)."""
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


def complete_network(network: Network | None, store: StateStore,
                     pool: tuple[str, int] | None = None) -> Network | None:
    """What only the runtime knows of a network: the joined container's init and files, the pool."""
    if network is None:
        return None
    if network.mode == "container":
        from execdriver.errors import NotRunningError
        from execdriver.linux.network import files_of

        try:
            state = store.load_running(network.container)
        except (NotRunningError, ValueError):
            raise ConfigError(f"network.container_id: container {network.container} is not running") from None
        network.target = (state.pid, state.pid_start)
        network.files = files_of(os.path.abspath(store.root), network.container)
    elif network.mode == "bridge" and pool is not None:
        network.pool = pool
    return network


def build(command: Command, state_dir: str, network: Network | None = None,
          systemd_cgroup: bool = False) -> LaunchSpec:
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
    argv = [config.entrypoint, *(config.arguments or ())]
    return launch_spec(
        container_id=command.id,
        state_dir=state_dir,
        argv=argv,
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
        limits=limits_of(command.resources, devices=default_device_rules(config.privileged)),
        cgroup_path=cgroup_path,
        systemd_cgroup=systemd_cgroup,
        network=network,
        security=security_of(command, config.privileged, state_dir),
        masked_paths=command.masked_paths,
        readonly_paths=command.readonly_paths,
        uid_mappings=[(m.container_id, m.host_id, m.size) for m in command.uid_mapping or ()],
        gid_mappings=[(m.container_id, m.host_id, m.size) for m in command.gid_mapping or ()],
        init=command.init,
        terminal=config.console_size if config.tty else None,
    )
