"""What a container's file system is made of: its root, its mounts, /dev, the paths hidden.

The launch spec's part (spec.LaunchSpec.filesystem) that rootfs.setup
builds in the init. Kept apart from rootfs.py, the kernel work, so that
what only carries a spec (an exec, the command line's light verbs) loads
none of it.
"""

from __future__ import annotations

from execdriver.linux.devices import Device
from execdriver.linux.syscalls import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC

TYPE_CHECKING = False
if TYPE_CHECKING:
    from execdriver.linux.devices import DeviceWire

    # The wire forms: what marshal carries to the fork server and the init.
    MountWire = tuple[str, str, str, int, str, int, int, bool, tuple[int, int]]
    RootWire = tuple[str, str, str, list[tuple[str, str | None]]]
    FilesystemWire = tuple[RootWire, str, bool, list[MountWire], list[DeviceWire] | None, list[str], list[str],
                           list[tuple[str, str]], int, str, str, list[str], bool]

INIT_PATH = "/dev/init"  # where --init's reaper goes, on the container's own /dev tmpfs

# Docker's defaults: hidden, and read-only, in every unprivileged container.
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# What the host view leaves out of the host's root: each gets a fresh mount.
HOST_VIEW_SKIP = frozenset({"proc", "sys", "dev", "tmp", "run", "lost+found"})


class Mount:
    """One mount of the container's: a filesystem of ``fstype``, or a bind (MS_BIND in ``flags``).

    ``propagation``: MS_SHARED, MS_SLAVE ... set on it once mounted;
    ``remount``: the flags a bind's top mount gets after it is made (a
    bind ignores its own; its submounts keep theirs, as with runc);
    ``is_dir``: whether a bind's mount point is a directory;
    ``recursive``: MS_* flags (set, cleared) on it and every mount below
    (the OCI's rro, rnosuid ...).
    """

    __slots__ = ("data", "destination", "flags", "fstype", "is_dir", "propagation", "recursive", "remount", "source")

    def __init__(self, destination: str, source: str, fstype: str, flags: int, data: str = "",
                 propagation: int = 0, remount: int = 0, is_dir: bool = True,
                 recursive: tuple[int, int] = (0, 0)) -> None:
        self.destination = destination
        self.source = source
        self.fstype = fstype
        self.flags = flags
        self.data = data
        self.propagation = propagation
        self.remount = remount
        self.is_dir = is_dir
        self.recursive = recursive

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & MS_BIND)

    def wire(self) -> MountWire:
        """As marshal carries it to the fork server and the init."""
        return (self.destination, self.source, self.fstype, self.flags, self.data, self.propagation, self.remount,
                self.is_dir, self.recursive)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mount) and self.wire() == other.wire()

    def __hash__(self) -> int:
        return hash(self.wire())

    def __repr__(self) -> str:
        return f"Mount{self.wire()!r}"


def bind(source: str, destination: str, *, writable: bool, is_dir: bool, recursive: bool = True,
         extra: int = 0) -> Mount:
    """A bind mount; ``extra`` adds MS_NOSUID, MS_NODEV or MS_NOEXEC, on every mount of it as read-only does."""
    remount = extra | (0 if writable else MS_RDONLY)
    return Mount(destination, source, "", MS_BIND | (MS_REC if recursive else 0), "", 0, remount, is_dir,
                 (remount, 0) if recursive else (0, 0))


def special(destination: str, fstype: str, flags: int, data: str = "", source: str = "") -> Mount:
    """A mount of a filesystem type (proc, tmpfs, sysfs ...)."""
    return Mount(destination, source or fstype, fstype, flags, data)


def default_mounts() -> list[Mount]:
    """/proc, a tmpfs /dev with devpts, shm and mqueue, /sys read-only: Docker's set."""
    return [
        special("/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC),
        special("/dev", "tmpfs", MS_NOSUID, "mode=755,size=65536k"),
        special("/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"),
        special("/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k", "shm"),
        special("/dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC),
        special("/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC),
    ]


class Root:
    """What becomes ``/``: a directory (``path``), an overlay (mount ``options``), or the host view.

    The host view (``entries``: the names of the host's / with their link
    targets, None for a file or directory) is a tmpfs with each bound in
    read-only.
    """

    __slots__ = ("entries", "kind", "options", "path")

    def __init__(self, kind: str, path: str = "", options: str = "",
                 entries: list[tuple[str, str | None]] | None = None) -> None:
        self.kind = kind
        self.path = path
        self.options = options
        self.entries = entries or []

    def wire(self) -> RootWire:
        return (self.kind, self.path, self.options, self.entries)


class Filesystem:
    """The container's file system, as rootfs.setup builds it.

    ``mountpoint``: where the root is assembled (in the init's own mount
    namespace); ``devices`` None leaves /dev as the mounts made it;
    ``cgroup_directory``/``cgroup_hierarchies``: what a ``cgroup`` mount
    shows (the container's cgroup, in each v1 hierarchy or in v2's);
    ``propagation`` of the new / (rootfsPropagation); ``init_binary``:
    --init's reaper, copied to INIT_PATH; ``no_pivot``: the root moved
    onto / and chrooted into rather than pivoted into (runc's --no-pivot,
    for a root on an initramfs, where pivot_root fails).
    """

    __slots__ = (
        "cgroup_directory",
        "cgroup_hierarchies",
        "devices",
        "init_binary",
        "masked_paths",
        "mountpoint",
        "mounts",
        "no_pivot",
        "propagation",
        "readonly",
        "readonly_paths",
        "root",
        "sysctl",
    )

    def __init__(self, root: Root, mountpoint: str, *, readonly: bool = False, mounts: list[Mount] | None = None,
                 devices: list[Device] | None = None, masked_paths: list[str] | None = None,
                 readonly_paths: list[str] | None = None, sysctl: list[tuple[str, str]] | None = None,
                 propagation: int = 0, init_binary: str = "", cgroup_directory: str = "",
                 cgroup_hierarchies: list[str] | None = None, no_pivot: bool = False) -> None:
        self.root = root
        self.no_pivot = no_pivot
        self.mountpoint = mountpoint
        self.readonly = readonly
        self.mounts = mounts if mounts is not None else []
        self.devices = devices
        self.masked_paths = masked_paths if masked_paths is not None else []
        self.readonly_paths = readonly_paths if readonly_paths is not None else []
        self.sysctl = sysctl or []
        self.propagation = propagation
        self.init_binary = init_binary
        self.cgroup_directory = cgroup_directory
        self.cgroup_hierarchies = cgroup_hierarchies or []

    def wire(self) -> FilesystemWire:
        return (self.root.wire(), self.mountpoint, self.readonly, [m.wire() for m in self.mounts],
                None if self.devices is None else [d.wire() for d in self.devices], self.masked_paths,
                self.readonly_paths, self.sysctl, self.propagation, self.init_binary, self.cgroup_directory,
                self.cgroup_hierarchies, self.no_pivot)

    @classmethod
    def from_wire(cls, wire: FilesystemWire) -> Filesystem:
        (root, mountpoint, readonly, mounts, devices, masked, readonly_paths, sysctl, propagation, init_binary,
         cgroup_directory, hierarchies, no_pivot) = wire
        return cls(Root(*root), mountpoint, readonly=readonly, mounts=[Mount(*m) for m in mounts],
                   devices=None if devices is None else [Device(*d) for d in devices], masked_paths=masked,
                   readonly_paths=readonly_paths, sysctl=sysctl, propagation=propagation, init_binary=init_binary,
                   cgroup_directory=cgroup_directory, cgroup_hierarchies=hierarchies, no_pivot=no_pivot)

    def bind_sources(self) -> list[str]:
        return [m.source for m in self.mounts if m.is_bind]
