"""Where a container's state lives: one directory per id under the root.

    <root>/                 default /run/execdriver, mode 0700
        .lock               flock: creating and removing id directories
        <id>/state.json     pid, its start time, rootfs, creation time
        <id>/rootfs/        mount point of the root, used only inside the
                            container's own mount namespace

Any process (the API that started the container, the CLI) can read the
state, so it can list, signal or clean a container that another started.
A directory whose recorded process is gone is stale: taking its id again
removes it first, so a crashed container's id can be reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from execdriver.errors import ConfigError, ContainerExistsError, NotRunningError
from execdriver.linux import process

DEFAULT_ROOT = "/run/execdriver"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")


@dataclass
class State:
    id: str
    pid: int = 0
    pid_start: int = 0
    rootfs: str = ""
    created: float = 0.0
    owner: int = 0
    owner_start: int = 0

    def alive(self) -> bool:
        return process.is_alive(self.pid, self.pid_start)

    def busy(self) -> bool:
        """Running, or still being started by a live process."""
        starting = self.pid == 0 and process.is_alive(self.owner, self.owner_start)
        return starting or self.alive()


def check_id(container_id: str) -> None:
    if not _ID.match(container_id):
        raise ConfigError(
            f"id: {container_id!r} is not a valid container id "
            "(letters, digits, '_', '.', '+', '-'; at most 128; not starting with a symbol)"
        )


class StateStore:
    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = root

    def path(self, container_id: str) -> str:
        check_id(container_id)
        return os.path.join(self.root, container_id)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self.root, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def create(self, container_id: str, rootfs: str) -> State:
        """Claim ``container_id``: its directory, with a state of no process yet."""
        directory = self.path(container_id)
        with self._locked():
            if os.path.lexists(directory):
                old = self.load(container_id)
                if old is not None and old.busy():
                    raise ContainerExistsError(f"container id {container_id} is already in use")
                remove_tree(directory)
            os.mkdir(directory, 0o700)
            os.mkdir(os.path.join(directory, "rootfs"), 0o755)
            owner = os.getpid()
            state = State(container_id, rootfs=rootfs, created=time.time(), owner=owner,
                          owner_start=process.start_time(owner) or 0)
            self.save(state)
            return state

    def save(self, state: State) -> None:
        directory = self.path(state.id)
        temporary = os.path.join(directory, ".state.json.tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(asdict(state), handle)
        os.rename(temporary, os.path.join(directory, "state.json"))

    def load(self, container_id: str) -> State | None:
        try:
            with open(os.path.join(self.path(container_id), "state.json"), encoding="utf-8") as handle:
                raw = json.load(handle)
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None
        return State(**{k: v for k, v in raw.items() if k in State.__dataclass_fields__})

    def load_running(self, container_id: str) -> State:
        state = self.load(container_id)
        if state is None or not state.alive():
            raise NotRunningError(f"Container is not running: {container_id}")
        return state

    def remove(self, container_id: str) -> None:
        with self._locked():
            remove_tree(self.path(container_id))

    def ids(self) -> list[str]:
        try:
            return sorted(name for name in os.listdir(self.root) if _ID.match(name))
        except FileNotFoundError:
            return []


def remove_tree(directory: str) -> None:
    # The rootfs mount point is only ever mounted in the container's own
    # namespace; should a mount have leaked here, detach it rather than
    # delete through it.
    mount_point = os.path.join(directory, "rootfs")
    if os.path.ismount(mount_point):
        from execdriver.linux.syscalls import MNT_DETACH, umount2

        umount2(mount_point, MNT_DETACH)
    shutil.rmtree(directory, ignore_errors=True)
