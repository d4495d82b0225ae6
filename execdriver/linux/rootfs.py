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

import os
import stat

from execdriver.linux.syscalls import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    make_readonly_recursive,
    mount,
    pivot_root,
    umount2,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_DEVICES = (
    # name, major, minor
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
_DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)
_MAX_SYMLINKS = 40

# What the host view leaves out of the host's root: each gets a fresh mount.
HOST_VIEW_SKIP = frozenset({"proc", "sys", "dev", "tmp", "run", "lost+found"})


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
    if real != root and not real.startswith(root.rstrip("/") + "/"):
        os.close(fd)
        raise RootfsError(f"{path}: resolves outside the container's rootfs")
    return fd


def _mount_at(root: str, dest: str, source: str | None, fstype: str | None, flags: int,
              data: str | None = None, *, create_dir: bool = True) -> None:
    try:
        fd = _open_in_root(root, dest, create_dir=create_dir)
    except OSError as err:
        raise RootfsError(f"cannot create mount point {dest}: {err.strerror}") from None
    try:
        mount(source, f"/proc/self/fd/{fd}", fstype, flags, data)
        if flags & MS_RDONLY and flags & MS_BIND:
            # A bind mount ignores MS_RDONLY; the new mount sits on the path,
            # not on the descriptor, so it is made read-only by path.
            make_readonly_recursive(resolve_in_root(root, dest))
    except OSError as err:
        raise RootfsError(f"cannot mount {source or fstype} on {dest}: {err.strerror}") from None
    finally:
        os.close(fd)


def _setup_root(spec: dict[str, Any], root: str) -> None:
    kind = spec["kind"]
    if kind == "dir":
        mount(spec["path"], root, None, MS_BIND | MS_REC)
    elif kind == "overlay":
        mount("overlay", root, "overlay", 0, spec["options"])
    elif kind == "host":
        mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
        for name, link in spec["entries"]:
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
    else:
        raise RootfsError(f"unknown root kind {kind!r}")


def _setup_dev(root: str) -> None:
    _mount_at(root, "/dev", "tmpfs", "tmpfs", MS_NOSUID, "mode=755,size=65536k")
    dev = resolve_in_root(root, "/dev")
    for name, major, minor in _DEVICES:
        os.mknod(os.path.join(dev, name), 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    for name, target in _DEV_LINKS:
        os.symlink(target, os.path.join(dev, name))
    for name in ("pts", "shm", "mqueue"):
        os.mkdir(os.path.join(dev, name), 0o755)
    mount("devpts", os.path.join(dev, "pts"), "devpts", MS_NOSUID | MS_NOEXEC,
          "newinstance,ptmxmode=0666,mode=0620,gid=5")
    mount("shm", os.path.join(dev, "shm"), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
          "mode=1777,size=65536k")
    mount("mqueue", os.path.join(dev, "mqueue"), "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def setup(spec: dict[str, Any]) -> None:
    """Assemble the rootfs that ``spec`` describes and pivot into it.

    The caller has made every mount private (init.detach): nothing mounted
    here propagates back to the host.
    """
    root: str = spec["mountpoint"]
    _setup_root(spec["root"], root)
    _mount_at(root, "/proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _setup_dev(root)
    _mount_at(root, "/sys", "sysfs", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if spec["tmpfs_tmp"]:
        _mount_at(root, "/tmp", "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    if spec["tmpfs_run"]:
        _mount_at(root, "/run", "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    for source, dest, writable, is_dir in spec["mounts"]:
        flags = MS_BIND | MS_REC | (0 if writable else MS_RDONLY)
        _mount_at(root, dest, source, None, flags, create_dir=is_dir)

    os.chdir(root)
    pivot_root(".", ".")
    umount2(".", MNT_DETACH)
    os.chdir("/")
    if spec["readonly"]:
        mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY)
