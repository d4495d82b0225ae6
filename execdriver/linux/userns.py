"""User namespaces: id mappings, written for the init by the runtime.

The init is cloned into its new user namespace with every other namespace
(so that they belong to it), and waits there, as the overflow id, until
the runtime has written its uid_map and gid_map. Root writes any mapping;
a user without privileges maps only itself (to root, setgroups denied), or
a range through newuidmap/newgidmap (Debian's uidmap) from /etc/subuid and
/etc/subgid.
"""

from __future__ import annotations

import os

from execdriver.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

Mapping = tuple[int, int, int]  # container id, host id, size
_MAX_ID = 2**32 - 1


def parse(maps: list[Any] | None, where: str) -> list[Mapping]:
    """Mappings as (container, host, size), checked: sizes, ranges, no overlaps."""
    result: list[Mapping] = []
    for index, entry in enumerate(maps or ()):
        container, host, size = (int(value) for value in entry)
        if size <= 0 or container < 0 or host < 0 or container + size > _MAX_ID or host + size > _MAX_ID:
            raise ConfigError(f"{where}[{index}]: {container} {host} {size} is not a range of ids")
        for other_container, other_host, other_size in result:
            if container < other_container + other_size and other_container < container + size:
                raise ConfigError(f"{where}[{index}]: container ids {container}+{size} overlap another mapping")
            if host < other_host + other_size and other_host < host + size:
                raise ConfigError(f"{where}[{index}]: host ids {host}+{size} overlap another mapping")
        result.append((container, host, size))
    if len(result) > 340:
        raise ConfigError(f"{where}: more than 340 mappings")
    return result


def host_id(maps: list[Mapping], container_id: int) -> int | None:
    """The host id that ``container_id`` maps to, None if unmapped."""
    for container, host, size in maps:
        if container <= container_id < container + size:
            return host + container_id - container
    return None


def read(pid: int, name: str) -> list[Mapping]:
    """The mappings of the user namespace of ``pid`` (``name``: uid_map or gid_map)."""
    with open(f"/proc/{pid}/{name}", encoding="utf-8") as handle:
        return [(int(a), int(b), int(c)) for a, b, c in (line.split() for line in handle if line.strip())]


def _text(maps: list[Mapping]) -> str:
    return "".join(f"{container} {host} {size}\n" for container, host, size in maps)


def write(pid: int, uid_maps: list[Mapping], gid_maps: list[Mapping]) -> None:
    """Write the mappings of the user namespace of ``pid``."""
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        _write(f"/proc/{pid}/uid_map", _text(uid_maps))
        _write(f"/proc/{pid}/gid_map", _text(gid_maps))
        return
    if uid_maps == [(0, uid, 1)] and gid_maps == [(0, gid, 1)]:
        # Itself only: allowed to anyone, once setgroups is off (user_namespaces(7)).
        _write(f"/proc/{pid}/setgroups", "deny")
        _write(f"/proc/{pid}/uid_map", _text(uid_maps))
        _write(f"/proc/{pid}/gid_map", _text(gid_maps))
        return
    import shutil
    import subprocess

    for tool, maps in (("newuidmap", uid_maps), ("newgidmap", gid_maps)):
        program = shutil.which(tool)
        if program is None:
            raise ConfigError(f"uid_mapping: mapping ranges without root needs {tool} (Debian's uidmap)")
        numbers = [str(number) for mapping in maps for number in mapping]
        result = subprocess.run([program, str(pid), *numbers], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ConfigError(f"uid_mapping: {tool} refused: {result.stderr.strip() or result.returncode}")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def idmapped_root(path: str, pid: int) -> int:
    """A detached, id-mapped copy of the rootfs at ``path``, for the init ``pid`` to attach."""
    from execdriver.linux import syscalls

    tree = syscalls.open_tree_clone(path)
    try:
        userns = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        try:
            syscalls.idmap_tree(tree, userns)
        finally:
            os.close(userns)
    except BaseException:
        os.close(tree)
        raise
    return tree
