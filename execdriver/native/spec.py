"""The launch spec: what a container is, typed, one class per concern.

Two front ends build it, each once: the API's Command (command.py) and an
OCI bundle's config.json (oci/config.py); :func:`validate` then checks it
once, whatever built it, before anything is created. From there it is
handed down as objects: the kernel layer takes the pieces it works on
(rootfs.setup a :class:`~execdriver.linux.filesystem.Filesystem`, the cgroup
managers a :class:`~execdriver.linux.cgroups.Limits`, the network a
:class:`~execdriver.linux.network.Network`), never the whole spec. It is
flattened (``wire``) only where it crosses to another process in marshal's
format: to the fork server, and to the init.

Where a new field goes: the class of its concern here (and its ``wire``),
its converter(s), and the one place that applies it (init.py for the
process, rootfs.py for the file system, the cgroup managers for a limit).
Plain classes with ``__slots__``: dataclasses cost the CLI milliseconds to
import.
"""

from __future__ import annotations

from execdriver.errors import ConfigError
from execdriver.linux import cgroups, syscalls
from execdriver.linux.cgroups import Limits
from execdriver.linux.filesystem import Filesystem

TYPE_CHECKING = False
if TYPE_CHECKING:  # (the aliases too: types cost a start their making, and only mypy reads them)
    from execdriver.linux.cgroups.base import Manager
    from execdriver.linux.filesystem import FilesystemWire
    from execdriver.linux.network import Network, NetworkWire

    Mapping = tuple[int, int, int]  # (container id, host id, size), as uid_map takes it

    # The wire forms: tuples of what marshal carries (to the fork server, to the init), one per class.
    ProcessWire = tuple[list[str], list[str], str, str, list[int], int, bool, int, tuple[int, int]]
    CapabilitySetsWire = tuple[list[int], list[int], list[int], list[int], list[int]]
    SecurityWire = tuple[list[int], CapabilitySetsWire | None, int, bytes | None, bool, bool,
                         list[tuple[int, int, int]], int | None, int, str, tuple[int, int] | None, bool]
    NamespacesWire = tuple[int, list[tuple[str, int]], list[Mapping], list[Mapping], bool, str, str]
    CgroupWire = tuple[str, str, int, dict[str, object], list[tuple[str, str]], list[str], str, str]
    LaunchWire = tuple[str, str, str, ProcessWire, SecurityWire, NamespacesWire, FilesystemWire, CgroupWire,
                       NetworkWire | None, bool]
    ExecWire = tuple[str, ProcessWire, SecurityWire, tuple[int, int], list[str]]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_CGROUP_PARENT = "execdriver"
# A container's own namespaces when nothing says otherwise (Docker's; the
# cgroup one is the OCI config's choice).
CLONE_FLAGS = (syscalls.CLONE_NEWNS | syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWIPC | syscalls.CLONE_NEWPID
               | syscalls.CLONE_NEWNET)



class Process:
    """What the init (or an exec'd process) runs: the program and where.

    ``user`` is "uid[:gid]" or a name of the container's /etc/passwd;
    ``terminal``: a pty from the container's devpts, its master sent over
    ``console_socket`` (a descriptor) with the slave sized ``console_size``.
    """

    __slots__ = (
        "additional_gids",
        "argv",
        "console_size",
        "console_socket",
        "cwd",
        "env",
        "preserve_fds",
        "terminal",
        "user",
    )

    def __init__(self, argv: list[str], env: list[str], user: str = "", cwd: str = "/", *,
                 additional_gids: list[int] | None = None, preserve_fds: int = 0, terminal: bool = False,
                 console_socket: int = -1, console_size: tuple[int, int] = (0, 0)) -> None:
        self.argv = argv
        self.env = env
        self.user = user
        self.cwd = cwd
        self.additional_gids = additional_gids or []
        self.preserve_fds = preserve_fds
        self.terminal = terminal
        self.console_socket = console_socket
        self.console_size = console_size

    def wire(self) -> ProcessWire:
        return (self.argv, self.env, self.user, self.cwd, self.additional_gids, self.preserve_fds, self.terminal,
                self.console_socket, self.console_size)

    @classmethod
    def from_wire(cls, wire: ProcessWire) -> Process:
        argv, env, user, cwd, gids, preserve, terminal, console_socket, size = wire
        return cls(argv, env, user, cwd, additional_gids=gids, preserve_fds=preserve, terminal=terminal,
                   console_socket=console_socket, console_size=size)


class CapabilitySets:
    """An OCI config's five capability sets, by number: kept across the switch of user as given."""

    NAMES = ("bounding", "effective", "permitted", "inheritable", "ambient")  # the order of __init__ and wire

    __slots__ = ("ambient", "bounding", "effective", "inheritable", "permitted")

    def __init__(self, bounding: list[int], effective: list[int], permitted: list[int], inheritable: list[int],
                 ambient: list[int]) -> None:
        self.bounding = bounding
        self.effective = effective
        self.permitted = permitted
        self.inheritable = inheritable
        self.ambient = ambient

    def wire(self) -> CapabilitySetsWire:
        return (self.bounding, self.effective, self.permitted, self.inheritable, self.ambient)


class Security:
    """What confines the process: capabilities, seccomp, rlimits and the rest of its attributes.

    ``capabilities`` is the bounding set (and root's set when no
    ``capability_sets`` are given); ``seccomp_bpf`` the compiled program
    (the init only loads it); ``seccomp_lenient``: the program answers with
    errnos only (Docker's default), so a warm sandbox may load it ahead;
    ``seccomp_notify``: it notifies (SCMP_ACT_NOTIFY): its listener goes to
    the runtime, which hands it to the profile's agent (protocol.SECCOMP);
    ``io_priority``: (class, level) for ioprio_set, None to inherit.
    """

    __slots__ = (
        "apparmor_profile",
        "capabilities",
        "capability_sets",
        "io_priority",
        "last_cap",
        "no_new_privileges",
        "oom_score_adj",
        "rlimits",
        "seccomp_bpf",
        "seccomp_lenient",
        "seccomp_notify",
        "umask",
    )

    def __init__(self, capabilities: list[int], last_cap: int, *, capability_sets: CapabilitySets | None = None,
                 seccomp_bpf: bytes | None = None, seccomp_lenient: bool = False, no_new_privileges: bool = False,
                 rlimits: list[tuple[int, int, int]] | None = None, oom_score_adj: int | None = None,
                 umask: int = 0o022, apparmor_profile: str = "", io_priority: tuple[int, int] | None = None,
                 seccomp_notify: bool = False) -> None:
        self.capabilities = capabilities
        self.seccomp_notify = seccomp_notify
        self.capability_sets = capability_sets
        self.last_cap = last_cap
        self.seccomp_bpf = seccomp_bpf
        self.seccomp_lenient = seccomp_lenient
        self.no_new_privileges = no_new_privileges
        self.rlimits = rlimits or []
        self.oom_score_adj = oom_score_adj
        self.umask = umask
        self.apparmor_profile = apparmor_profile
        self.io_priority = io_priority

    def wire(self) -> SecurityWire:
        sets = self.capability_sets
        return (self.capabilities, None if sets is None else sets.wire(), self.last_cap, self.seccomp_bpf,
                self.seccomp_lenient, self.no_new_privileges, self.rlimits, self.oom_score_adj, self.umask,
                self.apparmor_profile, self.io_priority, self.seccomp_notify)

    @classmethod
    def from_wire(cls, wire: SecurityWire) -> Security:
        caps, sets, last_cap, bpf, lenient, nnp, rlimits, oom_score_adj, umask, apparmor, io_priority, notify = wire
        return cls(caps, last_cap, capability_sets=None if sets is None else CapabilitySets(*sets),
                   seccomp_bpf=bpf, seccomp_lenient=lenient, no_new_privileges=nnp, rlimits=rlimits,
                   oom_score_adj=oom_score_adj, umask=umask, apparmor_profile=apparmor, io_priority=io_priority,
                   seccomp_notify=notify)


class Namespaces:
    """The namespaces the init is cloned into (``clone_flags``) or joins (``join``: path, CLONE_NEW* type).

    A user namespace has its ``uid_mappings``/``gid_mappings``;
    ``idmap_root``: its rootfs is shown through an id-mapped mount.
    """

    __slots__ = ("clone_flags", "domainname", "gid_mappings", "hostname", "idmap_root", "join", "uid_mappings")

    def __init__(self, clone_flags: int, *, join: list[tuple[str, int]] | None = None,
                 uid_mappings: list[Mapping] | None = None, gid_mappings: list[Mapping] | None = None,
                 idmap_root: bool = False, hostname: str = "", domainname: str = "") -> None:
        self.clone_flags = clone_flags
        self.join = join or []
        self.uid_mappings = uid_mappings or []
        self.gid_mappings = gid_mappings or []
        self.idmap_root = idmap_root
        self.hostname = hostname
        self.domainname = domainname

    def joins(self, nstype: int) -> bool:
        return any(kind == nstype for _, kind in self.join)

    def has(self, nstype: int) -> bool:
        """Whether the container has a namespace of this type of its own: made, or joined (a pod's)."""
        return bool(self.clone_flags & nstype) or self.joins(nstype)

    def wire(self) -> NamespacesWire:
        return (self.clone_flags, self.join, self.uid_mappings, self.gid_mappings, self.idmap_root, self.hostname,
                self.domainname)

    @classmethod
    def from_wire(cls, wire: NamespacesWire) -> Namespaces:
        flags, join, uids, gids, idmap, hostname, domainname = wire
        return cls(flags, join=join, uid_mappings=uids, gid_mappings=gids, idmap_root=idmap, hostname=hostname,
                   domainname=domainname)


class Cgroup:
    """Where the container's cgroup goes and what it limits.

    ``path``: the manager's name for it (``a/b``, or systemd's
    ``slice:prefix:name``), "" for none; ``directory``: its directory
    relative to each hierarchy's root; ``parent_levels``: how many of its
    parents its removal may take when empty (those its creation made);
    ``join``: on cgroup v1, each hierarchy's mount point and the
    container's ``tasks`` file in it, for the init to join by itself;
    ``hierarchies``: the v1 mount points; ``into``: the container's
    directory in the cgroup v2 hierarchy (v2's, or a hybrid host's beside
    v1), which the runtime makes before the clone and clones the init into
    (syscalls.clone says why), "" for none; ``tree``: a cgroup whose
    whole subtree goes with the container (a sandbox template's, which
    holds the zygote's cgroup and its sandboxes'), "" for none;
    ``unified``: whether, on a hybrid host, the cgroup takes in its cgroup
    v2 hierarchy too (parts.place_cgroup says when); the runtime's alone,
    not sent to the init.
    """

    __slots__ = ("directory", "hierarchies", "into", "join", "limits", "parent_levels", "path", "tree", "unified")

    def __init__(self, path: str = "", directory: str = "", parent_levels: int = 0, limits: Limits | None = None,
                 join: list[tuple[str, str]] | None = None, hierarchies: list[str] | None = None,
                 into: str = "", tree: str = "", unified: bool = True) -> None:
        self.path = path
        self.directory = directory
        self.parent_levels = parent_levels
        self.limits = limits if limits is not None else Limits()
        self.join = join or []
        self.hierarchies = hierarchies or []
        self.into = into
        self.tree = tree
        self.unified = unified

    def manager(self) -> Manager:
        """The manager that makes this cgroup."""
        return cgroups.manager(self.path, unified=self.unified)

    def wire(self) -> CgroupWire:
        return (self.path, self.directory, self.parent_levels, self.limits.wire(), self.join, self.hierarchies,
                self.into, self.tree)

    @classmethod
    def from_wire(cls, wire: CgroupWire) -> Cgroup:
        path, directory, parent_levels, limits, join, hierarchies, into, tree = wire
        return cls(path, directory, parent_levels, Limits(**limits), join, hierarchies, into, tree)


class LaunchSpec:
    """A whole container: names, and one object per concern.

    ``state_dir``: the id's directory, also where the root is assembled;
    ``rootfs``: the root as the front end named it (for the state);
    ``pdeathsig``: the init dies with its parent (not an OCI container,
    which outlives the command that created it).
    """

    __slots__ = (
        "cgroup",
        "filesystem",
        "id",
        "namespaces",
        "network",
        "pdeathsig",
        "process",
        "rootfs",
        "security",
        "state_dir",
    )

    def __init__(self, id: str, state_dir: str, rootfs: str, process: Process, security: Security,
                 namespaces: Namespaces, filesystem: Filesystem, cgroup: Cgroup, network: Network | None = None,
                 pdeathsig: bool = True) -> None:
        self.id = id
        self.state_dir = state_dir
        self.rootfs = rootfs
        self.process = process
        self.security = security
        self.namespaces = namespaces
        self.filesystem = filesystem
        self.cgroup = cgroup
        self.network = network
        self.pdeathsig = pdeathsig

    def wire(self) -> LaunchWire:
        return (self.id, self.state_dir, self.rootfs, self.process.wire(), self.security.wire(),
                self.namespaces.wire(), self.filesystem.wire(), self.cgroup.wire(),
                None if self.network is None else self.network.wire(), self.pdeathsig)

    def child_wire(self) -> LaunchWire:
        """The wire form of what the init needs: not the network's lease, nor the cgroup's place and limits.

        The runtime makes the cgroup and the lease (and the fork server keeps
        what it needs to remove them: protocol.Request.kept); the init only
        joins the cgroup (v1's files, ``join``) and its namespaces.
        """
        cgroup = Cgroup(join=self.cgroup.join, hierarchies=self.cgroup.hierarchies).wire()
        return (self.id, self.state_dir, self.rootfs, self.process.wire(), self.security.wire(),
                self.namespaces.wire(), self.filesystem.wire(), cgroup, None, self.pdeathsig)

    @classmethod
    def from_wire(cls, wire: LaunchWire) -> LaunchSpec:
        container_id, state_dir, rootfs, process, security, namespaces, filesystem, cgroup, network, pdeathsig = wire
        net = None
        if network is not None:
            from execdriver.linux.network import Network

            net = Network.from_wire(network)
        return cls(container_id, state_dir, rootfs, Process.from_wire(process), Security.from_wire(security),
                   Namespaces.from_wire(namespaces), Filesystem.from_wire(filesystem), Cgroup.from_wire(cgroup),
                   net, pdeathsig)

    def shape(self) -> bytes:
        """Everything but the names and the process's own fields: what a warm sandbox must match (pool.py).

        Not the cgroup's parent_levels: how many parents were missing
        changes once a sandbox made them.
        """
        import marshal

        process, namespaces, filesystem = self.process, self.namespaces, self.filesystem.wire()
        cgroup = (self.cgroup.path.rpartition("/")[0], sorted(self.cgroup.limits.wire().items()))
        return marshal.dumps((self.rootfs, process.additional_gids, process.preserve_fds, process.terminal,
                              self.security.wire(), namespaces.wire()[:-2], namespaces.domainname,
                              # not the mountpoint, nor the cgroup's directory and hierarchies (names)
                              filesystem[:1] + filesystem[2:-3] + filesystem[-1:], cgroup, self.pdeathsig))


class ExecSpec:
    """A process to run in a running container: its own Process and Security, the container's init.

    ``init``: the container's init as (pid, start time), checked before
    joining its namespaces; ``cgroup_tasks``: the files it writes itself into.
    """

    __slots__ = ("cgroup_tasks", "id", "init", "process", "security")

    def __init__(self, id: str, process: Process, security: Security, init: tuple[int, int] = (0, 0),
                 cgroup_tasks: list[str] | None = None) -> None:
        self.id = id
        self.process = process
        self.security = security
        self.init = init
        self.cgroup_tasks = cgroup_tasks or []

    def wire(self) -> ExecWire:
        return (self.id, self.process.wire(), self.security.wire(), self.init, self.cgroup_tasks)

    @classmethod
    def from_wire(cls, wire: ExecWire) -> ExecSpec:
        container_id, process, security, init, tasks = wire
        return cls(container_id, Process.from_wire(process), Security.from_wire(security), init, tasks)


def validate(spec: LaunchSpec, process_optional: bool = False) -> None:
    """What must hold of any launch spec, whichever front end built it: checked once, before anything is made.

    The converters refuse what they cannot read, naming their own field;
    this refuses what no container can be.
    """
    if spec.process.argv or not process_optional:  # (an OCI config may leave the process to start's)
        check_process(spec.process, spec.security.rlimits)
    if len(spec.namespaces.hostname.encode()) > 64:
        raise ConfigError("hostname: longer than 64 bytes")
    namespaces = spec.namespaces
    if bool(namespaces.clone_flags & syscalls.CLONE_NEWUSER) != bool(namespaces.uid_mappings):
        raise ConfigError("uid_mappings: a user namespace and its id mappings go together")
    if not namespaces.has(syscalls.CLONE_NEWNS) and namespaces.uid_mappings:
        raise ConfigError("namespaces: a user namespace needs a mount namespace of the container's own")
    if spec.network is not None and spec.network.unshares == bool(
            not namespaces.clone_flags & syscalls.CLONE_NEWNET):
        raise ConfigError(f"network: mode {spec.network.mode} and the network namespace disagree")
    spec.cgroup.limits.check()
    if spec.cgroup.limits.unified:
        from execdriver.linux import cgroups

        if cgroups.version() == 1:
            raise ConfigError(f"resources.unified: {spec.cgroup.limits.unified[0][0]} is a cgroup v2 file, "
                              "and this host has cgroup v1")
    if not spec.cgroup.path:
        asked = spec.cgroup.limits.asked()
        if asked:
            from execdriver.linux import cgroups

            raise ConfigError(f"resources.{asked[0]}: limits need a cgroup, and {cgroups.why_no_cgroup()}")


def check_process(process: Process, rlimits: list[tuple[int, int, int]] | None = None) -> None:
    """What any process must have to run, the init's or an exec'd one's."""
    if not process.argv or not process.argv[0]:
        raise ConfigError("process_config.entrypoint: no command to run")
    if any("\0" in a for a in process.argv):
        raise ConfigError("process_config.arguments: NUL byte in an argument")
    if not process.cwd.startswith("/"):
        raise ConfigError(f"working_dir: {process.cwd!r} must be an absolute path inside the rootfs")
    for index, (_, soft, hard) in enumerate(rlimits or ()):
        if soft > hard:
            raise ConfigError(f"resources.rlimits[{index}]: soft {soft} is above hard {hard}")
