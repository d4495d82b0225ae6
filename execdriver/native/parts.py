"""The pieces both front ends place alike: the root, the cgroup, the user namespace.

The API's converter (command.py) and the OCI one (oci/config.py) read
their own input; where a piece means the same whoever asked for it (a
rootfs directory checked, a cgroup path placed under the runtime's parent
or systemd's slice, mappings checked), they build it here, once.
"""

from __future__ import annotations

import os

from execdriver.errors import ConfigError
from execdriver.linux import cgroups
from execdriver.linux.cgroups import Limits
from execdriver.linux.filesystem import HOST_VIEW_SKIP, Root
from execdriver.native.spec import DEFAULT_CGROUP_PARENT, Cgroup

TYPE_CHECKING = False
if TYPE_CHECKING:
    from execdriver.native.spec import Mapping


def root_of(rootfs: str, layer_paths: list[str] | None = None, layer_folder: str = "") -> Root:
    """The root: a directory, the host's view (``/``), or an overlay of layers."""
    if rootfs:
        path = os.path.abspath(rootfs)
        if path == "/":
            entries: list[tuple[str, str | None]] = []
            for entry in sorted(os.scandir("/"), key=lambda e: e.name):
                if entry.name in HOST_VIEW_SKIP:
                    continue
                entries.append((entry.name, os.readlink(entry.path) if entry.is_symlink() else None))
            return Root("host", entries=entries)
        if not os.path.isdir(path):
            raise ConfigError(f"rootfs: {rootfs} does not exist or is not a directory")
        return Root("dir", os.path.realpath(path))
    if not layer_paths:
        raise ConfigError("rootfs: no root filesystem given (set rootfs, or layer_paths and layer_folder)")
    for index, layer in enumerate(layer_paths):
        if not os.path.isdir(layer):
            raise ConfigError(f"layer_paths[{index}]: {layer} does not exist or is not a directory")
    lower = ":".join(os.path.realpath(p) for p in layer_paths)
    if not layer_folder:
        if len(layer_paths) == 1:
            return Root("dir", os.path.realpath(layer_paths[0]))
        return Root("overlay", options=f"lowerdir={lower}")
    folder = os.path.realpath(layer_folder)
    if not os.path.isdir(folder):
        raise ConfigError(f"layer_folder: {layer_folder} does not exist or is not a directory")
    for sub in ("diff", "work"):
        os.makedirs(os.path.join(folder, sub), mode=0o755, exist_ok=True)
    return Root("overlay", options=f"lowerdir={lower},upperdir={folder}/diff,workdir={folder}/work")


def user_namespace(uid_mappings: list[Mapping] | None, gid_mappings: list[Mapping] | None,
                   root: Root) -> tuple[list[Mapping], list[Mapping], bool]:
    """The mappings, checked, and whether the rootfs needs an id-mapped mount: none without mappings."""
    if not uid_mappings and not gid_mappings:
        return [], [], False
    from execdriver.linux import userns

    uids = userns.parse(uid_mappings, "uid_mapping")
    gids = userns.parse(gid_mappings, "gid_mapping")
    if userns.host_id(uids, 0) is None or userns.host_id(gids, 0) is None:
        raise ConfigError("uid_mapping: the container's root (uid and gid 0) must be mapped")
    if root.kind == "overlay":
        raise ConfigError("layer_paths: an overlay root in a user namespace is not supported yet; use rootfs")
    # A rootfs whose owner the namespace does not map (the host's root's, as
    # images unpack) shows as the remapped root's through an id-mapped mount
    # (userns.idmapped_root); one chowned for the mapping (as engines do) is used as it is.
    idmap = False
    if root.kind == "dir" and os.geteuid() == 0:
        owner = os.stat(root.path).st_uid
        idmap = not any(host <= owner < host + size for _, host, size in uids)
    return uids, gids, idmap


def place_cgroup(container_id: str, path: str, limits: Limits, joins_itself: bool = True,
                 systemd: bool = False, unified: bool = True) -> Cgroup:
    """Where the cgroup goes, and how many of its parents its removal may take when empty.

    Those are the runtime's own parent, or the parents of an engine's
    path that no one has made yet: containerd's ``/<namespace>/<id>``
    makes a namespace cgroup that nothing else would remove (runc leaves
    it behind). A parent that exists already is its maker's. An init in a
    user namespace cannot write the host's root-owned files: the runtime
    moves it (``joins_itself`` False). ``systemd``: ``path`` is a scope's
    ``slice:prefix:name``; otherwise a path, from the root.

    ``unified``: on a hybrid host, whether the cgroup takes in its cgroup
    v2 hierarchy too, as runc's does (the command line's). The API's
    containers stay out (command.launch_spec): nothing there is limited or
    counted (hugetlb, its one controller, is no API limit), and an init
    the fork server cloned ahead could enter it only by a move, which
    waits for an RCU grace period (forkserver._move).
    """
    if not path and os.geteuid() != 0:
        delegated = cgroups.delegated_subtree()
        if delegated:  # cgroup v2 under systemd: the user's own subtree (the runtime moves the init)
            path = f"{delegated}/{DEFAULT_CGROUP_PARENT}/{container_id}"
            return Cgroup(path, path, cgroups.manager(path).missing_ancestors(), users_limits(limits),
                          unified=unified)
        # Without privileges there is no cgroup to make here: the container stays in ours
        # (validate refuses limits then).
        return Cgroup(limits=users_limits(limits), unified=unified)
    if systemd:
        return _systemd_cgroup(container_id, path, limits)  # (cgroup v2 alone: no hybrid to choose for)
    if not path:
        path, parent_levels = f"{DEFAULT_CGROUP_PARENT}/{container_id}", 1
    elif ".." in path.split("/") or not path.strip("/"):
        raise ConfigError(f"cgroup_parent: {path!r} does not name a cgroup below the root")
    else:
        path = path.strip("/")
        if ":" in path and "/" not in path:
            path = f"./{path}"  # a directory named slice:prefix:name, not systemd's scope (cgroups.manager)
        parent_levels = cgroups.manager(path, unified=unified).missing_ancestors()
    hierarchies: list[str] = []
    join: list[tuple[str, str]] = []
    v2_root = cgroups.v2_root() if unified or cgroups.version() == 2 else ""
    # Cloned into its v2 cgroup, never moved: syscalls.clone says why.
    into = os.path.join(v2_root, path) if joins_itself and v2_root else ""
    if cgroups.version() == 1:
        from execdriver.linux.cgroups.v1 import UNIFIED, mounts

        each = {mount: controller for controller, mount in mounts().items()}  # one controller per hierarchy
        # The container's cgroup mount shows its v1 hierarchies (a hybrid host's v2 one stays out, as with runc).
        hierarchies = [mount for mount, controller in each.items() if controller != UNIFIED]
        if joins_itself:
            join = [(mount, f"{path}/tasks") for mount, controller in each.items() if controller != UNIFIED]
    return Cgroup(path, path, parent_levels, limits, join, hierarchies, into, unified=unified)


def _systemd_cgroup(container_id: str, path: str, limits: Limits) -> Cgroup:
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
    return Cgroup(path, manager.path, 0, users_limits(limits))


def users_limits(limits: Limits) -> Limits:
    """A user's without the device rules: it can load no device program, and its user namespace makes no node."""
    if os.geteuid() == 0 or not limits.device_rules:
        return limits
    return Limits(**{k: v for k, v in limits.wire().items() if k != "device_rules"})
