"""From a Command to the launch spec that the container's init carries out.

Every check that can be made on the host happens here, before anything is
created, so bad input fails with a ConfigError that names the field and
leaves nothing behind. The spec is plain JSON data: it crosses to the fork
server as it is.
"""

from __future__ import annotations

import os
import posixpath
from typing import Any

from execdriver.api import Command
from execdriver.errors import ConfigError
from execdriver.linux import syscalls
from execdriver.linux.rootfs import HOST_VIEW_SKIP
from execdriver.native.init import DEFAULT_PATH

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
    resources = command.resources
    if resources is not None and any((resources.memory, resources.memory_reservation, resources.blkio_weight)):
        raise ConfigError("resources: cgroup limits are not supported by this driver yet")
    if command.network is not None and (command.network.interface is not None or command.network.container_id):
        raise ConfigError("network: only the default network (loopback alone) is supported by this driver yet")
    if command.process_config.tty:
        raise ConfigError("process_config.tty: terminals are not supported by this driver yet")


def _root(command: Command) -> dict[str, Any]:
    if command.rootfs:
        path = os.path.abspath(command.rootfs)
        if path == "/":
            entries = []
            for entry in sorted(os.scandir("/"), key=lambda e: e.name):
                if entry.name in HOST_VIEW_SKIP:
                    continue
                link = os.readlink(entry.path) if entry.is_symlink() else None
                entries.append((entry.name, link))
            return {"kind": "host", "entries": entries}
        if not os.path.isdir(path):
            raise ConfigError(f"rootfs: {command.rootfs} does not exist or is not a directory")
        return {"kind": "dir", "path": os.path.realpath(path)}
    if not command.layer_paths:
        raise ConfigError("rootfs: no root filesystem given (set rootfs, or layer_paths and layer_folder)")
    for index, layer in enumerate(command.layer_paths):
        if not os.path.isdir(layer):
            raise ConfigError(f"layer_paths[{index}]: {layer} does not exist or is not a directory")
    lower = ":".join(os.path.realpath(p) for p in command.layer_paths)
    if not command.layer_folder:
        if len(command.layer_paths) == 1:
            return {"kind": "dir", "path": os.path.realpath(command.layer_paths[0])}
        return {"kind": "overlay", "options": f"lowerdir={lower}"}
    folder = os.path.realpath(command.layer_folder)
    if not os.path.isdir(folder):
        raise ConfigError(f"layer_folder: {command.layer_folder} does not exist or is not a directory")
    for sub in ("diff", "work"):
        os.makedirs(os.path.join(folder, sub), mode=0o755, exist_ok=True)
    return {
        "kind": "overlay",
        "options": f"lowerdir={lower},upperdir={folder}/diff,workdir={folder}/work",
    }


def _mounts(command: Command) -> list[tuple[str, str, bool, bool]]:
    result = []
    for index, item in enumerate(command.mounts or ()):
        where = f"mounts[{index}]"
        if not item.source or not os.path.exists(item.source):
            raise ConfigError(f"{where}.source: {item.source!r} does not exist")
        if not item.destination.startswith("/"):
            raise ConfigError(f"{where}.destination: {item.destination!r} is not an absolute path")
        destination = posixpath.normpath(item.destination)
        if destination == "/":
            raise ConfigError(f"{where}.destination: cannot mount over the container's root")
        source = os.path.realpath(item.source)
        result.append((source, destination, item.writable, os.path.isdir(source)))
    if command.tmpdir:
        if not os.path.isdir(command.tmpdir):
            raise ConfigError(f"tmpdir: {command.tmpdir} does not exist or is not a directory")
        result.append((os.path.realpath(command.tmpdir), "/tmp", True, True))
    return result


def _env(command: Command) -> list[str]:
    env = list(command.process_config.env) if command.process_config.env is not None else []
    for index, entry in enumerate(env):
        if "=" not in entry or entry.startswith("="):
            raise ConfigError(f"process_config.env[{index}]: {entry!r} is not KEY=VALUE")
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, f"PATH={DEFAULT_PATH}")
    if command.hostname and not any(e.startswith("HOSTNAME=") for e in env):
        env.append(f"HOSTNAME={command.hostname}")
    return env


def build(command: Command, state_dir: str) -> dict[str, Any]:
    """Validate ``command`` and turn it into the init's launch spec."""
    _unsupported(command)
    config = command.process_config
    if not config.entrypoint:
        raise ConfigError("process_config.entrypoint: no command to run")
    if "\0" in config.entrypoint or any("\0" in a for a in config.arguments or ()):
        raise ConfigError("process_config.arguments: NUL byte in an argument")
    if len(command.hostname.encode()) > 64:
        raise ConfigError("hostname: longer than 64 bytes")
    working_dir = command.working_dir or "/"
    if not working_dir.startswith("/"):
        raise ConfigError(f"working_dir: {working_dir!r} must be an absolute path inside the rootfs")
    root = _root(command)
    return {
        "id": command.id,
        "state_dir": state_dir,
        "clone_flags": CLONE_FLAGS,
        "mountpoint": os.path.join(state_dir, "rootfs"),
        "root": root,
        "tmpfs_tmp": root["kind"] == "host" and not command.tmpdir,
        "tmpfs_run": root["kind"] == "host",
        "readonly": command.readonly_rootfs,
        "mounts": _mounts(command),
        "hostname": command.hostname,
        "argv": [config.entrypoint, *(config.arguments or ())],
        "env": _env(command),
        "user": config.user,
        "cwd": posixpath.normpath(working_dir),
    }
