"""Every Linux system call that the os module lacks, through ffi (ctypes' core), in one place.

Each wrapper raises OSError with the errno and the path involved, as the os
module does. Nothing here allocates beyond the foreign call itself, because
these functions run in the container's init between clone and exec.
"""

from __future__ import annotations

import errno
import os

from execdriver.linux import ffi

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")

# mount(2) flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MS_NOSYMFOLLOW = 0x100
MNT_DETACH = 0x2

# clone(2) / unshare(2) / setns(2) flags
CLONE_PIDFD = 0x1000
CLONE_NEWNS = 0x20000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount_setattr(2)
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1

PR_SET_PDEATHSIG = 1
CLOSE_RANGE_CLOEXEC = 1 << 2

_NUMBERS = {
    # machine: (clone, pivot_root, close_range, mount_setattr)
    "x86_64": (56, 155, 436, 442),
    "aarch64": (220, 41, 436, 442),
}
_SYS_CLONE, _SYS_PIVOT_ROOT, _SYS_CLOSE_RANGE, _SYS_MOUNT_SETATTR = _NUMBERS[os.uname().machine]

_libc = ffi.Library(None)
# The clone wrapper keeps the GIL across the call, so that the child starts
# with the interpreter in the state the parent left it (like os.fork).
_libc_gil = ffi.Library(None, keep_gil=True)

_mount = _libc.mount
_mount.argtypes = (ffi.c_char_p, ffi.c_char_p, ffi.c_char_p, ffi.c_ulong, ffi.c_char_p)
_umount2 = _libc.umount2
_umount2.argtypes = (ffi.c_char_p, ffi.c_int)
_unshare = _libc.unshare
_unshare.argtypes = (ffi.c_int,)
_setns = _libc.setns
_setns.argtypes = (ffi.c_int, ffi.c_int)
_sethostname = _libc.sethostname
_sethostname.argtypes = (ffi.c_char_p, ffi.c_size_t)
_prctl = _libc.prctl
_prctl.argtypes = (ffi.c_int, ffi.c_ulong, ffi.c_ulong, ffi.c_ulong, ffi.c_ulong)
_syscall = _libc.syscall
_syscall.restype = ffi.c_long
_clone_syscall = _libc_gil.syscall
_clone_syscall.restype = ffi.c_long


class _MountAttr(ffi.Structure):
    _fields_ = (
        ("attr_set", ffi.c_uint64),
        ("attr_clr", ffi.c_uint64),
        ("propagation", ffi.c_uint64),
        ("userns_fd", ffi.c_uint64),
    )


def _fail(what: str, path: str | bytes | None = None) -> OSError:
    errno = ffi.get_errno()
    message = f"{what}: {os.strerror(errno)}"
    if path is not None:
        return OSError(errno, message, os.fsdecode(path))
    return OSError(errno, message)


def _b(path: str | bytes | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def mount(
    source: str | bytes | None,
    target: str | bytes,
    fstype: str | bytes | None,
    flags: int = 0,
    data: str | bytes | None = None,
) -> None:
    if _mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        raise _fail(f"mount {os.fsdecode(fstype or b'bind')}", target)


def umount2(target: str | bytes, flags: int = 0) -> None:
    if _umount2(_b(target), flags) != 0:
        raise _fail("umount", target)


def pivot_root(new_root: str | bytes, put_old: str | bytes) -> None:
    if _syscall(_SYS_PIVOT_ROOT, ffi.c_char_p(_b(new_root)), ffi.c_char_p(_b(put_old))) != 0:
        raise _fail("pivot_root", new_root)


PROC_SUPER_MAGIC = 0x9FA0
TMPFS_MAGIC = 0x01021994


class _Statfs(ffi.Structure):
    _fields_ = (("f_type", ffi.c_long), ("rest", ffi.c_byte * 112))


_fstatfs = _libc.fstatfs
_fstatfs.argtypes = (ffi.c_int, ffi.c_void_p)


def fs_type(fd: int) -> int:
    """The filesystem magic of the file ``fd`` is open on (statfs(2)'s f_type)."""
    buffer = _Statfs()
    if _fstatfs(fd, ffi.byref(buffer)) != 0:
        raise _fail("fstatfs")
    return int(buffer.f_type) & 0xFFFFFFFF


def proc_write(path: str, data: str) -> None:
    """Write to a file of /proc, refusing one that is not on a real procfs (CVE-2019-16884)."""
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if fs_type(fd) != PROC_SUPER_MAGIC:
            raise OSError(errno.EPERM, f"{path} is not on procfs")
        os.write(fd, data.encode())
    finally:
        os.close(fd)


class _SockFprog(ffi.Structure):
    # The program's own bytes are the filter: a c_char_p field points at them, no copy.
    _fields_ = (("len", ffi.c_ushort), ("filter", ffi.c_char_p))


_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}[os.uname().machine]


_SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3


def seccomp_set_filter(program: bytes, listener: bool = False) -> int:
    """Install a classic BPF ``program`` (seccomp.py compiles it) on this thread: seccomp(SET_MODE_FILTER).

    ``listener``: the program notifies (SCMP_ACT_NOTIFY): returns the
    descriptor its notifications come on (-1 without).
    """
    fprog = _SockFprog(len(program) // 8, program)
    result = _syscall(_SYS_SECCOMP, 1, _SECCOMP_FILTER_FLAG_NEW_LISTENER if listener else 0, ffi.byref(fprog))
    if result < 0:
        raise _fail("seccomp")
    return int(result) if listener else -1


_SYS_PIDFD_GETFD = 438  # the same on every architecture


def pidfd_getfd(pidfd: int, fd: int) -> int:
    """A copy of the descriptor ``fd`` of the process ``pidfd`` refers to, close-on-exec."""
    result = _syscall(_SYS_PIDFD_GETFD, ffi.c_int(pidfd), ffi.c_int(fd), ffi.c_uint(0))
    if result < 0:
        raise _fail("pidfd_getfd")
    return int(result)


def unshare(flags: int) -> None:
    if _unshare(flags) != 0:
        raise _fail("unshare")


def setns(fd: int, nstype: int = 0) -> None:
    if _setns(fd, nstype) != 0:
        raise _fail("setns")


def in_namespace_of(pid: int, name: str, nstype: int, action: Callable[[], T]) -> T:
    """``action()``, run by this thread in ``pid``'s namespace ``name`` (net, uts ...); then back in its own."""
    own = os.open(f"/proc/thread-self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(target, nstype)
        finally:
            os.close(target)
        try:
            return action()
        finally:
            setns(own, nstype)
    finally:
        os.close(own)


def sethostname(name: str) -> None:
    raw = name.encode()
    if _sethostname(raw, len(raw)) != 0:
        raise _fail("sethostname")


def set_keepcaps(keep: bool) -> None:
    if _prctl(8, int(keep), 0, 0, 0) != 0:  # PR_SET_KEEPCAPS
        raise _fail("prctl(PR_SET_KEEPCAPS)")


def set_dumpable(dumpable: bool) -> None:
    """Non-dumpable: no one without CAP_SYS_PTRACE opens our /proc/<pid>/exe, mem or fd."""
    if _prctl(4, int(dumpable), 0, 0, 0) != 0:  # PR_SET_DUMPABLE
        raise _fail("prctl(PR_SET_DUMPABLE)")


def set_no_new_privs() -> None:
    if _prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise _fail("prctl(PR_SET_NO_NEW_PRIVS)")


def setdomainname(name: str) -> None:
    raw = name.encode()
    if _libc.setdomainname(raw, len(raw)) != 0:
        raise _fail("setdomainname")


class _Rlimit(ffi.Structure):
    _fields_ = (("soft", ffi.c_uint64), ("hard", ffi.c_uint64))


def setrlimit(resource: int, soft: int, hard: int) -> None:
    """prlimit on this process: values above a C long (RLIM_INFINITY) fit."""
    limit = _Rlimit(soft & 0xFFFFFFFFFFFFFFFF, hard & 0xFFFFFFFFFFFFFFFF)
    if _libc.prlimit(0, resource, ffi.byref(limit), None) != 0:
        raise _fail(f"setrlimit({resource})")


def set_pdeathsig(signum: int) -> None:
    if _prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        raise _fail("prctl(PR_SET_PDEATHSIG)")


def close_range_cloexec(first: int) -> None:
    """Mark every descriptor from ``first`` up close-on-exec."""
    if _syscall(_SYS_CLOSE_RANGE, ffi.c_uint(first), ffi.c_uint(0xFFFFFFFF),
                ffi.c_uint(CLOSE_RANGE_CLOEXEC)) != 0:
        raise _fail("close_range")


def close_all_but(*keep: int) -> None:
    """Close every descriptor from 3 up but those in ``keep``."""
    first = 3
    for fd in sorted({fd for fd in keep if fd >= 3}):
        if fd > first and _syscall(_SYS_CLOSE_RANGE, ffi.c_uint(first), ffi.c_uint(fd - 1), ffi.c_uint(0)) != 0:
            raise _fail("close_range")
        first = fd + 1
    if _syscall(_SYS_CLOSE_RANGE, ffi.c_uint(first), ffi.c_uint(0xFFFFFFFF), ffi.c_uint(0)) != 0:
        raise _fail("close_range")


_AT_EMPTY_PATH = 0x1000
# mount(2)'s flags and mount_setattr(2)'s MOUNT_ATTR_* of the same meaning
_MOUNT_ATTRS = ((MS_RDONLY, 0x1), (MS_NOSUID, 0x2), (MS_NODEV, 0x4), (MS_NOEXEC, 0x8), (MS_NOATIME, 0x10),
                (MS_NODIRATIME, 0x80), (MS_STRICTATIME, 0x20), (MS_NOSYMFOLLOW, 0x200000))
_ATIME = 0x70  # MOUNT_ATTR__ATIME: relatime (0), noatime, strictatime


def _attributes(flags: int) -> tuple[int, int]:
    """MS_* flags as mount_setattr's attributes, and the flags that have none."""
    attr, left = 0, flags
    for ms_flag, attr_flag in _MOUNT_ATTRS:
        if flags & ms_flag:
            attr |= attr_flag
            left &= ~ms_flag
    return attr, left


def set_tree_attributes(tree: int, flags: int, propagation: int = 0, recursive: bool = False,
                        clear: int = 0, path: str = "") -> int:
    """Set mount flags (MS_RDONLY, MS_NOSUID ...) and propagation on a tree; ``clear``: flags to clear.

    ``tree``: a detached tree, before it is attached (or a directory
    descriptor with ``path`` in it); ``recursive``: every mount of it, not
    only its top. Returns the flags it could not express (the caller
    remounts for those).
    """
    attr_set, left = _attributes(flags)
    attr_clr, _ = _attributes(clear)
    # An access-time mode replaces the current one: the kernel wants those bits cleared too.
    if attr_set & _ATIME or flags & MS_RELATIME:
        attr_clr = (attr_clr & ~_ATIME) | _ATIME
    if attr_set or attr_clr or propagation:
        at_flags = (0 if path else _AT_EMPTY_PATH) | (AT_RECURSIVE if recursive or propagation & MS_REC else 0)
        _mount_setattr(tree, path.encode(), at_flags,
                       _MountAttr(attr_set, attr_clr, propagation & ~MS_REC, 0), "mount_setattr", path or None)
    return left & ~MS_RELATIME


def _mount_setattr(dirfd: int, path: bytes, at_flags: int, attr: _MountAttr, what: str,
                   where: str | bytes | None = None) -> None:
    if _syscall(_SYS_MOUNT_SETATTR, ffi.c_int(dirfd), ffi.c_char_p(path), ffi.c_uint(at_flags),
                ffi.byref(attr), ffi.c_size_t(ffi.sizeof(attr))) != 0:
        raise _fail(what, where)


MOUNT_ATTR_IDMAP = 0x00100000


def idmap_tree(tree: int, userns: int) -> None:
    """Make the detached tree ``tree`` an id-mapped mount through the user namespace ``userns``.

    Files owned by host uid N then show as owned by whoever N is in that
    namespace: a remapped root sees the host's root-owned rootfs as its own.
    """
    _mount_setattr(tree, b"", _AT_EMPTY_PATH | AT_RECURSIVE, _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns),
                   "mount_setattr(MOUNT_ATTR_IDMAP)")


def make_readonly_recursive(path: str | bytes) -> None:
    """Make the mount at ``path`` and every mount below it read-only."""
    _mount_setattr(-100, _b(path) or b"", AT_RECURSIVE, _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0),  # AT_FDCWD
                   "mount_setattr", path)


class _CloneArgs(ffi.Structure):
    """struct clone_args, up to its cgroup field (clone3, Linux 5.7)."""

    _fields_ = tuple((name, ffi.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size", "tls", "set_tid",
        "set_tid_size", "cgroup"))


_SYS_CLONE3 = 435  # the same on every architecture
CLONE_INTO_CGROUP = 0x200000000


def clone(flags: int, cgroup: int = -1) -> tuple[int, int]:
    """fork(2) with namespace flags: returns (pid, pidfd), or (0, -1) in the child.

    ``cgroup``: a cgroup v2 directory's descriptor to start the child in
    (CLONE_INTO_CGROUP). Born there, it never moves in: a move by a write
    to cgroup.procs takes the kernel's global threadgroup lock, whose
    writers wait for an RCU grace period (often 10 ms and more).

    Only safe in a single-threaded process: the child is a copy of the caller
    with one thread, and no fork handlers run in it. The child is expected
    to exec or ``os._exit``.
    """
    pidfd = ffi.c_int(-1)
    if cgroup >= 0:
        args = _CloneArgs(flags=flags | CLONE_PIDFD | CLONE_INTO_CGROUP, pidfd=ffi.addressof(pidfd),
                          exit_signal=17, cgroup=cgroup)  # 17 = SIGCHLD
        pid = _clone_syscall(_SYS_CLONE3, ffi.byref(args), ffi.c_size_t(ffi.sizeof(args)))
    else:
        pid = _clone_syscall(_SYS_CLONE, ffi.c_ulong(flags | CLONE_PIDFD | 17),  # 17 = SIGCHLD
                             None, ffi.byref(pidfd), None, None)
    if pid < 0:
        raise _fail("clone3" if cgroup >= 0 else "clone")
    if pid == 0:
        return 0, -1
    return pid, pidfd.value


# struct ifreq: the C array type made once, at import, not in each init.
_Ifreq = ffi.c_char * 40
_socket = _libc.socket
_ioctl = _libc.ioctl
_close = _libc.close


def loopback_up() -> None:
    """Bring ``lo`` up in the current network namespace (SIOCSIFFLAGS)."""
    fd = _socket(2, 2 | 0o2000000, 0)  # AF_INET, SOCK_DGRAM | SOCK_CLOEXEC
    if fd < 0:
        raise _fail("socket")
    try:
        request = _Ifreq()
        request.value = b"lo"
        if _ioctl(fd, ffi.c_ulong(0x8913), request) != 0:  # SIOCGIFFLAGS
            raise _fail("ioctl(SIOCGIFFLAGS)", "lo")
        flags = ffi.c_short.from_buffer(request, 16)
        flags.value |= 0x1 | 0x40  # IFF_UP | IFF_RUNNING
        if _ioctl(fd, ffi.c_ulong(0x8914), request) != 0:  # SIOCSIFFLAGS
            raise _fail("ioctl(SIOCSIFFLAGS)", "lo")
    finally:
        _close(fd)


_SYS_OPEN_TREE, _SYS_MOVE_MOUNT = 428, 429  # the same on every architecture
OPEN_TREE_CLONE = 0x1
MOVE_MOUNT_F_EMPTY_PATH = 0x4


def open_tree_clone(path: str | bytes, recursive: bool = True, private: bool = True) -> int:
    """A detached, private copy of the mount tree at ``path`` (what ``mount --rbind`` would attach).

    The descriptor can cross to a process in another mount namespace, which
    attaches it with :func:`move_mount`: a bind of the host's current view.
    A copy of a shared mount would join its peer group, so that whatever a
    container mounts under it (proc, sysfs, the masks) appeared on the host
    (systemd mounts / shared): the copy is made private, all of it, before
    anyone can mount under it. ``private`` False skips that for a copy taken
    where every mount is private already (an init's own namespace): it
    costs a start a system call, and the namespace lock, per bind.
    """
    flags = OPEN_TREE_CLONE | (AT_RECURSIVE if recursive else 0) | os.O_CLOEXEC
    fd = _syscall(_SYS_OPEN_TREE, ffi.c_int(-100), ffi.c_char_p(_b(path)), ffi.c_uint(flags))
    if fd < 0:
        raise _fail("open_tree", path)
    if not private:
        return int(fd)
    try:
        _mount_setattr(fd, b"", _AT_EMPTY_PATH | AT_RECURSIVE, _MountAttr(0, 0, MS_PRIVATE, 0), "mount_setattr", path)
    except OSError:
        os.close(fd)
        raise
    return int(fd)


def move_mount(tree: int, target: str | bytes | int) -> None:
    """Attach the detached tree ``tree`` at ``target``: a path, or an O_PATH descriptor.

    (A /proc/self/fd/N path is refused here, unlike with mount(2).)
    """
    if isinstance(target, int):
        to_fd, to_path, flags = target, b"", MOVE_MOUNT_F_EMPTY_PATH | 0x40  # MOVE_MOUNT_T_EMPTY_PATH
    else:
        to_fd, to_path, flags = -100, _b(target) or b"", MOVE_MOUNT_F_EMPTY_PATH
    if _syscall(_SYS_MOVE_MOUNT, ffi.c_int(tree), ffi.c_char_p(b""), ffi.c_int(to_fd),
                ffi.c_char_p(to_path), ffi.c_uint(flags)) != 0:
        raise _fail("move_mount", target if not isinstance(target, int) else f"descriptor {target}")


# bpf(2): cgroup v2 enforces device rules with an eBPF program on the cgroup (cgroups/devices.py).
_SYS_IOPRIO_SET = {"x86_64": 251, "aarch64": 30}[os.uname().machine]
_IOPRIO_WHO_PROCESS = 1
IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}


def ioprio_set(io_class: int, level: int) -> None:
    """This process's I/O scheduling class and level (ioprio_set(2); the class in the top bits)."""
    if _syscall(_SYS_IOPRIO_SET, ffi.c_int(_IOPRIO_WHO_PROCESS), ffi.c_int(0), ffi.c_int(io_class << 13 | level)) != 0:
        raise _fail("ioprio_set")


_SYS_BPF = {"x86_64": 321, "aarch64": 280}[os.uname().machine]
_BPF_PROG_LOAD, _BPF_PROG_ATTACH = 5, 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6  # the attach type
BPF_F_ALLOW_MULTI = 2


class _BpfProgLoad(ffi.Structure):
    # c_char_p fields point at the program's and the licence's own bytes (8 bytes: __aligned_u64 on LP64).
    _fields_ = (("prog_type", ffi.c_uint32), ("insn_cnt", ffi.c_uint32), ("insns", ffi.c_char_p),
                ("license", ffi.c_char_p), ("log_level", ffi.c_uint32), ("log_size", ffi.c_uint32),
                ("log_buf", ffi.c_uint64), ("kern_version", ffi.c_uint32), ("prog_flags", ffi.c_uint32),
                ("prog_name_low", ffi.c_uint64), ("prog_name_high", ffi.c_uint64), ("prog_ifindex", ffi.c_uint32),
                ("expected_attach_type", ffi.c_uint32))


class _BpfAttach(ffi.Structure):
    _fields_ = (("target_fd", ffi.c_uint32), ("attach_bpf_fd", ffi.c_uint32), ("attach_type", ffi.c_uint32),
                ("attach_flags", ffi.c_uint32), ("replace_bpf_fd", ffi.c_uint32))


def bpf_prog_load(prog_type: int, program: bytes, attach_type: int = 0) -> int:
    """Load an eBPF ``program`` (8-byte instructions) and return its descriptor (close-on-exec)."""
    attr = _BpfProgLoad(prog_type, len(program) // 8, program, b"Apache-2.0\0", 0, 0, 0, 0, 0, 0, 0, 0,
                        attach_type)
    fd = _syscall(_SYS_BPF, ffi.c_int(_BPF_PROG_LOAD), ffi.byref(attr), ffi.c_uint(ffi.sizeof(attr)))
    if fd < 0:
        raise _fail("bpf(BPF_PROG_LOAD)")
    return int(fd)


def bpf_prog_attach(target_fd: int, prog_fd: int, attach_type: int, flags: int = 0) -> None:
    """Attach the program ``prog_fd`` to the cgroup directory ``target_fd``."""
    attr = _BpfAttach(target_fd, prog_fd, attach_type, flags, 0)
    if _syscall(_SYS_BPF, ffi.c_int(_BPF_PROG_ATTACH), ffi.byref(attr), ffi.c_uint(ffi.sizeof(attr))) != 0:
        raise _fail("bpf(BPF_PROG_ATTACH)")
