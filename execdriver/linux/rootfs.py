"""The container's root filesystem, assembled in its own mount namespace.

Runs in the container's init before exec. Everything is mounted below a
mount point of the container's own (its state directory's ``rootfs``), then
``pivot_root`` makes it ``/`` and the host's tree is detached, so no path of
the host stays reachable. Mount points inside the rootfs are resolved with
symlinks followed as if the rootfs were ``/`` and mounted through an
``O_PATH`` descriptor (``/proc/self/fd/N``), so a symlink swapped in behind
our back cannot redirect a mount onto the host (CVE-2021-30465).
"""

from __future__ import annotations

import errno
import os
import stat

from execdriver.linux.devices import DEFAULT_DEVICES, Device
from execdriver.linux.filesystem import (
    INIT_PATH,
    MASKED_PATHS,
    READONLY_PATHS,
    Filesystem,
    Mount,
    Root,
    bind,
    default_mounts,
    special,
)
from execdriver.linux.syscalls import (
    MNT_DETACH,
    MS_BIND,
    MS_MOVE,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    PROC_SUPER_MAGIC,
    TMPFS_MAGIC,
    fs_type,
    make_readonly_recursive,
    mount,
    move_mount,
    open_tree_clone,
    pivot_root,
    proc_write,
    set_tree_attributes,
    umount2,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)
_MAX_SYMLINKS = 40


class RootfsError(Exception):
    """A step of the rootfs setup failed; the message says which path."""


def resolve_in_root(root: str, path: str) -> str:
    """Resolve ``path`` inside ``root`` as if ``root`` were ``/``.

    Symlinks are followed with ``root`` as their root, ``..`` never climbs
    above it. The final component need not exist.
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            info = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(info.st_mode):
            links += 1
            if links > _MAX_SYMLINKS:
                raise RootfsError(f"{path}: too many levels of symbolic links")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _canonical(root: str) -> str:
    """The path of the root as the kernel reports descriptors in it (see attach_root)."""
    return os.readlink(root) if root.startswith("/proc/self/fd/") else root


def attach_root(fs: Filesystem, trees: list[int]) -> str:
    """Mount the root at the mount point now, and return a path to it that needs no search rights.

    For an init in a user namespace, which is about to become the remapped
    root: that one may not search the runtime's state directories (0700),
    but "/proc/self/fd/N" of a descriptor opened on the mounted root leads
    straight into the root's own mount. (One opened before the mount would
    lead to the directory under it.)
    """
    root = fs.mountpoint
    if trees:
        move_mount(trees.pop(0), root)
    elif fs.root.kind == "host":
        # Only the tmpfs now, the namespace's root its owner (uid=0 is read
        # in our user namespace): it fills it (setup), since the host's ids
        # we still have are not mapped there.
        mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,uid=0,gid=0")
    else:
        _setup_root(fs.root, root)
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{fd}"


def _open_in_root(root: str, path: str, *, create_dir: bool | None) -> int:
    """An O_PATH descriptor of ``path`` inside ``root``, created if asked.

    ``create_dir`` True creates a directory, False an empty file, None
    creates nothing. The descriptor is checked to still lie in ``root``.
    """
    target = resolve_in_root(root, path)
    if create_dir is not None and not os.path.lexists(target):
        # Every existing component is resolved already: what is missing
        # gets created as plain directories inside the root.
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        target = resolve_in_root(root, path)
        try:
            if create_dir:
                os.mkdir(target, 0o755)
            else:
                os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_WRONLY, 0o644))
        except FileExistsError:
            pass
    fd = os.open(target, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    real = os.readlink(f"/proc/self/fd/{fd}")
    canonical = _canonical(root)
    if real != canonical and not real.startswith(canonical.rstrip("/") + "/"):
        os.close(fd)
        raise RootfsError(f"{path}: resolves outside the container's rootfs")
    return fd


# What may be bind-mounted inside /proc, as runc allows it (lxcfs's files).
_PROC_BINDS = frozenset(("/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps",
                         "/proc/uptime", "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev"))


def _check_proc(root: str, destination: str, fd: int, fstype: str, bind_source: str = "") -> None:
    """Only procfs goes on /proc, and binds only on a few files in it (CVE-2019-16884).

    Anything else there could stand in for the files the runtime writes to,
    or uncover the masked ones. The check is on where the destination
    really leads, symlinks followed, not on its spelling. A bind of a
    procfs (the host's, for a container in the host's pid namespace) is
    procfs too, as runc takes it.
    """
    real, canonical = os.readlink(f"/proc/self/fd/{fd}"), _canonical(root)
    inside = "/" + os.path.relpath(real, canonical) if real != canonical else "/"
    if inside == "/" and destination.strip("/"):
        raise RootfsError(f"cannot mount on {destination}: it leads to the container's root")
    if (inside == "/proc" or inside.startswith("/proc/")) and inside not in _PROC_BINDS and not (
            inside == "/proc" and (fstype == "proc" or (bind_source and _is_procfs(bind_source)))):
        raise RootfsError(f"cannot mount on {destination}: it leads to {inside}, where only procfs goes")


def _is_procfs(path: str) -> bool:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fs_type(fd) == PROC_SUPER_MAGIC
    finally:
        os.close(fd)


def _mount_entry(root: str, entry: Mount, tree: int = -1, private_copy: bool = False) -> None:
    """Mount ``entry`` in ``root`` through a descriptor of its resolved mount point.

    The mount point is opened once, with symlinks resolved inside the root,
    and checked to lie in it; the mount goes onto that descriptor, so a
    path swapped meanwhile changes nothing (CVE-2021-30465). A bind is a
    detached copy of its source (``tree``, from a fork server, or made
    here) whose flags are set before it is attached: no path is looked up
    again after the check. ``private_copy``: in the host's mount namespace
    (a container without one of its own), where a copy of a shared mount
    would propagate what is mounted under it back to the host.
    """
    destination, source, fstype, flags, data = entry.destination, entry.source, entry.fstype, entry.flags, entry.data
    propagation, remount = entry.propagation, entry.remount
    if not flags & MS_BIND and fstype in ("proc", "sysfs") and os.path.islink(
            os.path.join(root, destination.lstrip("/"))):
        # A rootfs whose /proc leads elsewhere would have the runtime's later
        # writes to /proc land where the image chose (CVE-2019-16884).
        raise RootfsError(f'filesystem "{fstype}" must be mounted on ordinary directory '
                          f"({destination} is a symbolic link in the rootfs)")  # (runc's words)
    try:
        fd = _open_in_root(root, destination, create_dir=entry.is_dir or not flags & MS_BIND)
    except OSError as err:
        raise RootfsError(f"cannot create mount point {destination}: {err.strerror}") from None
    try:
        _check_proc(root, destination, fd, fstype, source if flags & MS_BIND else "")
        if not flags & MS_BIND:
            try:
                mount(source, f"/proc/self/fd/{fd}", fstype, flags, data or None)
            except OSError as err:
                if err.errno != errno.EINVAL or fstype != "devpts" or "gid=" not in data:
                    raise
                # In a user namespace that maps no tty group (one mapping of a
                # user of its own), devpts takes no gid: runc drops it too.
                data = ",".join(option for option in data.split(",") if not option.startswith("gid="))
                mount(source, f"/proc/self/fd/{fd}", fstype, flags, data or None)
            if propagation:  # on the new mount, which sits on the path
                mount(None, resolve_in_root(root, destination), None, propagation)
            if entry.recursive != (0, 0):  # (fd is the directory under the new mount: by path, as above)
                set_tree_attributes(-100, entry.recursive[0], recursive=True, clear=entry.recursive[1],
                                    path=resolve_in_root(root, destination))
            return
        if tree < 0:  # in the init's namespace, which it made private (init.run): so is the copy
            # (in the init's own namespace a slave, which propagates nothing back to the host)
            tree = open_tree_clone(source, recursive=bool(flags & MS_REC), private=private_copy)
        try:
            # A bind ignores its flags: they go on the copy's top mount (its
            # submounts keep theirs, as with runc), the recursive ones on all;
            # one call where they are the same (filesystem.bind's).
            if entry.recursive == (remount, 0):
                left = set_tree_attributes(tree, remount, recursive=True)
            else:
                if entry.recursive != (0, 0):
                    set_tree_attributes(tree, entry.recursive[0], recursive=True, clear=entry.recursive[1])
                left = set_tree_attributes(tree, remount)
            move_mount(tree, fd)
            if propagation:  # refused on a detached tree: on the attached one, through the same descriptor
                set_tree_attributes(tree, 0, propagation)
        finally:
            os.close(tree)
        if left:
            mount(None, resolve_in_root(root, destination), None, MS_REMOUNT | MS_BIND | remount)
    except OSError as err:
        raise RootfsError(f"cannot mount {source or fstype} on {destination}: {err.strerror}") from None
    finally:
        os.close(fd)


def _move_root(root: str) -> None:
    """--no-pivot: the root moved onto / and chrooted into, as runc's msMoveRoot does.

    The host's procfs and sysfs stay in this mount namespace, out of the
    chroot's sight but enough for the kernel to let a process of the
    container mount a fresh, unmasked procfs (in a user namespace of its
    own): each full one outside the root is detached first, or covered.
    """
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    exposed = []
    for line in lines:
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        mountpoint = fields[4].replace("\\040", " ")
        if fields[3] == "/" and fstype in ("proc", "sysfs") and not (mountpoint + "/").startswith(root + "/"):
            exposed.append(mountpoint)
    for mountpoint in sorted(exposed, key=len, reverse=True):
        try:
            umount2(mountpoint, MNT_DETACH)
        except FileNotFoundError:
            continue  # under one detached already
        except OSError as err:
            if err.errno not in (errno.EINVAL, errno.EPERM):
                raise
            mount("tmpfs", mountpoint, "tmpfs", 0)
    mount(root, "/", None, MS_MOVE)
    os.chroot(".")


def _setup_root(spec: Root, root: str) -> None:
    kind = spec.kind
    if kind == "dir":
        mount(spec.path, root, None, MS_BIND | MS_REC)
    elif kind == "overlay":
        mount("overlay", root, "overlay", 0, spec.options)
    elif kind == "host":
        mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
        _populate_host_view(spec, root)
    else:
        raise RootfsError(f"unknown root kind {kind!r}")


def _populate_host_view(spec: Root, root: str) -> None:
    """The host view's tmpfs root: each top-level entry of the host's / bound in read-only."""
    for name, link in spec.entries:
        path = os.path.join(root, name)
        if link is not None:
            os.symlink(link, path)
            continue
        source = "/" + name
        if os.path.isdir(source):
            os.mkdir(path, 0o755)
        else:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
        mount(source, path, None, MS_BIND | MS_REC)
        make_readonly_recursive(path)


def _mount_cgroup(root: str, entry: Mount, directory: str, hierarchies: list[str], private_copy: bool) -> None:
    """A ``cgroup`` mount: the container's own cgroups, each hierarchy's under its name.

    As runc does without a cgroup namespace: a tmpfs, and in it a bind of the
    container's directory in every v1 hierarchy (or of its v2 directory).
    """
    destination, flags = entry.destination, entry.flags
    readonly = flags & MS_RDONLY
    if not hierarchies:  # cgroup v2: one directory
        source = os.path.join("/sys/fs/cgroup", directory)
        _mount_entry(root, bind(source, destination, writable=not readonly, is_dir=True),
                     private_copy=private_copy)
        return
    _mount_entry(root, special(destination, "tmpfs", flags & ~MS_RDONLY, "mode=755"))
    # The tmpfs is ours and new, and nothing of the container runs yet: its
    # entries need no resolution in the root. Each hierarchy's bind goes on
    # through its own descriptor; then one call gives the tmpfs and every
    # bind the entry's flags (the binds' submounts too, as runc's rbinds).
    tmpfs = os.open(resolve_in_root(root, destination), os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if fs_type(tmpfs) != TMPFS_MAGIC:  # a path swapped since the mount: not ours
            raise RootfsError(f"cannot mount the cgroups on {destination}: it no longer leads to their tmpfs")
        for hierarchy in hierarchies:
            name = os.path.basename(hierarchy)
            os.mkdir(name, 0o755, dir_fd=tmpfs)
            target = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=tmpfs)
            try:
                tree = open_tree_clone(os.path.join(hierarchy, directory), private=private_copy)
                try:
                    move_mount(tree, target)
                finally:
                    os.close(tree)
            except OSError as err:
                raise RootfsError(f"cannot mount {os.path.join(hierarchy, directory)} on "
                                  f"{destination}/{name}: {err.strerror}") from None
            finally:
                os.close(target)
        set_tree_attributes(tmpfs, flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC), recursive=True)
    finally:
        os.close(tmpfs)


def _copy_init(source: str, target: str) -> None:
    """A copy of the host's static tini, not a bind of it: the container may write its copy, never the host's."""
    try:
        src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise RootfsError(f"init {source}: {err.strerror}") from None
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o555)
        try:
            size = os.fstat(src).st_size
            offset = 0
            while offset < size:
                offset += os.sendfile(dst, src, offset, size - offset)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _create_devices(root: str, devices: list[Device], dev: str = "") -> None:
    dev = dev or resolve_in_root(root, "/dev")
    for device in devices:
        path, kind, major, minor, mode, uid, gid = device.wire()
        name = path[len("/dev/"):]
        # A node right in /dev (the usual case) needs no resolution: /dev
        # is resolved once, and its entries are ours to make.
        target = os.path.join(dev, name) if "/" not in name else resolve_in_root(root, path)
        if "/" in name:
            os.makedirs(os.path.dirname(target), 0o755, exist_ok=True)
        file_type = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[kind]
        if os.path.lexists(target):
            os.unlink(target)
        try:
            os.mknod(target, mode | file_type, os.makedev(major, minor))
        except PermissionError:
            # In a user namespace no node can be made: the host's is bound
            # in, as runc does (the devices cgroup still rules its use).
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_WRONLY, 0o600))
            mount(path, target, None, MS_BIND)
            continue
        if uid or gid:
            os.chown(target, uid, gid)
    for name, link in _DEV_LINKS:
        if not os.path.lexists(os.path.join(dev, name)):
            os.symlink(link, os.path.join(dev, name))


def mask(path: str) -> None:
    """Hide ``path``: /dev/null over a file, an empty read-only tmpfs over a directory."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0")
    else:
        mount("/dev/null", path, None, MS_BIND)


def make_readonly(path: str) -> None:
    try:
        mount(path, path, None, MS_BIND | MS_REC)
    except FileNotFoundError:
        return
    make_readonly_recursive(path)


# A blank init mounts the standard filesystems ahead, on a tmpfs over an empty
# directory of the runtime's (in its own mount namespace), and moves them into
# the rootfs when its spec comes.
_STAGED = ("/proc", "/dev", "/sys")


def stage(staging: str) -> None:
    """Mount default_mounts() and the default devices under ``staging``, ahead of any spec."""
    mount("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NODEV, "mode=700")
    for entry in default_mounts():
        target = staging + entry.destination
        os.makedirs(target, 0o755, exist_ok=True)
        mount(entry.source, target, entry.fstype, entry.flags, entry.data or None)
    _create_devices("", list(DEFAULT_DEVICES), staging + "/dev")
    # Docker's read-only and masked paths, all on /proc and /sys: ahead too
    # (some twenty mounts off a start's critical path); they move with them.
    for path in READONLY_PATHS:
        make_readonly(staging + path)
    for path in MASKED_PATHS:
        mask(staging + path)


def can_use_staged(fs: Filesystem, joins_network_or_ipc: bool) -> bool:
    """Whether ``fs`` wants exactly the standard filesystems that stage() made.

    Not if the container joins a network or IPC namespace: sysfs shows the
    interfaces, and mqueue the queues, of the namespace it was mounted in,
    the blank's.
    """
    if joins_network_or_ipc:
        return False
    if fs.masked_paths != list(MASKED_PATHS) or fs.readonly_paths != list(READONLY_PATHS) or fs.sysctl:
        return False  # the staged /proc and /sys are Docker's, masked and read-only where it says
    standard = default_mounts()
    return fs.mounts[: len(standard)] == standard and (fs.devices or []) == list(DEFAULT_DEVICES)


SHARED_ROOT = "rootfs"  # under the mount point: the root of a container without a mount namespace


def setup(fs: Filesystem, trees: list[int] | None = None, staged: str = "",
          cgroup_ready: Callable[[], None] | None = None, root_attached: bool = False,
          host_namespace: bool = False) -> None:
    """Assemble the rootfs that ``fs`` describes and pivot into it.

    The caller has made every mount private (init.run): nothing mounted here
    propagates back to the host. ``trees``, from a fork server, are detached
    copies (open_tree) of the rootfs and of every bind source in order, taken
    in the host's mount namespace: a blank init, whose namespace is older than
    the spec, attaches them and so sees the host as it is now. ``staged``:
    the directory where the standard filesystems wait (stage()), to move in.
    ``cgroup_ready`` is called before the first cgroup mount, which needs
    the container's cgroup: until then the rootfs is built while the
    driver makes the cgroup. ``root_attached``: attach_root mounted the
    root at ``fs.mountpoint`` already. ``host_namespace``: the container has
    no mount namespace of its own (runc allows it): the root goes on
    SHARED_ROOT under the mount point, made private before anything is
    mounted under it, and is chrooted into (a pivot_root would move the
    host's); remove_tree detaches it with the state directory.
    """
    root = fs.mountpoint
    pending = list(trees or ())
    if host_namespace:
        root = os.path.join(root, SHARED_ROOT)
        os.mkdir(root, 0o700)
        _setup_root(fs.root, root)
        mount(None, root, None, MS_REC | MS_PRIVATE)
    elif root_attached:
        if fs.root.kind == "host":
            _populate_host_view(fs.root, root)  # attach_root mounted the tmpfs
    elif pending:
        move_mount(pending.pop(0), root)
    else:
        _setup_root(fs.root, root)
    mounts = fs.mounts
    if staged:
        for name in _STAGED:
            if os.path.islink(root + name):
                raise RootfsError(f"{name} is a symbolic link in the rootfs: it must be a directory")
            try:
                fd = _open_in_root(root, name, create_dir=True)
            except OSError as err:
                raise RootfsError(f"cannot create mount point {name}: {err.strerror}") from None
            try:
                mount(staged + name, f"/proc/self/fd/{fd}", None, MS_MOVE)
            except OSError as err:
                raise RootfsError(f"cannot mount {name}: {err.strerror}") from None
            finally:
                os.close(fd)
        mounts = mounts[len(default_mounts()):]
    later_readonly: list[Mount] = []
    for asked in mounts:
        entry = asked
        if not asked.is_bind and asked.flags & MS_RDONLY and (asked.fstype == "tmpfs" or asked.destination == "/dev"):
            # Read-write until what goes in it (devices, /dev/pts, mount points) is
            # there, then read-only (runc's order: its issue 3248, a read-only /dev).
            later_readonly.append(asked)
            entry = Mount(asked.destination, asked.source, asked.fstype, asked.flags & ~MS_RDONLY, asked.data,
                          asked.propagation, recursive=asked.recursive)
        if entry.fstype == "cgroup":
            if cgroup_ready is not None:  # it shows the container's cgroup: that must exist now
                cgroup_ready()
                cgroup_ready = None
            _mount_cgroup(root, entry, fs.cgroup_directory, fs.cgroup_hierarchies, host_namespace)
        elif entry.is_bind and pending:
            _mount_entry(root, entry, pending.pop(0), host_namespace)
        else:
            _mount_entry(root, entry, private_copy=host_namespace)
    if fs.devices is not None and not staged:
        _create_devices(root, fs.devices)
    if fs.init_binary:
        _copy_init(fs.init_binary, resolve_in_root(root, INIT_PATH))

    os.chdir(root)
    if host_namespace:
        os.chroot(".")
    elif fs.no_pivot:
        _move_root(root)
    else:
        pivot_root(".", ".")
        umount2(".", MNT_DETACH)
    os.chdir("/")
    if fs.propagation:
        mount(None, "/", None, fs.propagation)
    for entry in later_readonly:
        mount(None, entry.destination, None, MS_REMOUNT | entry.flags, entry.data or None)
    for key, value in fs.sysctl:
        try:
            proc_write("/proc/sys/" + key.replace(".", "/"), value)
        except OSError as err:
            raise RootfsError(f"sysctl {key}: {err.strerror}") from None
    if not staged:  # (staged ones came masked: stage())
        for path in fs.readonly_paths:
            make_readonly(path)
        for path in fs.masked_paths:
            mask(path)
    if fs.readonly:
        mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY)
