"""Where a container's state lives: one directory per id under the root.

    <root>/                 default /run/execdriver, mode 0700
        .lock               flock: creating and removing id directories
        <id>/               also the mount point of the container's root,
                            used only inside its own mount namespace;
                            flock'd by its creator until state.json exists
        <id>/state.json     pid, its start time, rootfs, creation time

Any process (the API that started the container, the CLI) can read the
state, so it can list, signal or clean a container that another started.
A directory whose recorded process is gone is stale: taking its id again
removes it first, so a crashed container's id can be reused.
"""

from __future__ import annotations

import fcntl
import os
import time

from execdriver.errors import ConfigError, ContainerExistsError, NotRunningError
from execdriver.gojson import ascii_json, loads
from execdriver.linux import process

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

def _default_root() -> str:
    """$EXECDRIVER_ROOT; else /run/execdriver for root, a user's own directory otherwise (as runc's)."""
    if os.environ.get("EXECDRIVER_ROOT"):
        return os.environ["EXECDRIVER_ROOT"]
    if os.geteuid() == 0:
        return "/run/execdriver"
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/execdriver-{os.geteuid()}"
    return os.path.join(runtime_dir, "execdriver") if os.environ.get("XDG_RUNTIME_DIR") else runtime_dir


DEFAULT_ROOT = _default_root()
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-")


def _valid_id(name: str) -> bool:
    return 0 < len(name) <= 128 and name[0].isascii() and name[0].isalnum() and _ID_CHARS.issuperset(name)


class State:
    """What state.json holds. A plain class: dataclasses are slow to import."""

    FIELDS = ("id", "pid", "pid_start", "rootfs", "created", "owner", "owner_start", "cgroup",
              "cgroup_parent_levels", "oci")

    def __init__(self, id: str, pid: int = 0, pid_start: int = 0, rootfs: str = "", created: float = 0.0,
                 owner: int = 0, owner_start: int = 0, cgroup: str = "", cgroup_parent_levels: int = 0,
                 oci: dict[str, Any] | None = None) -> None:
        self.id, self.pid, self.pid_start, self.rootfs = id, pid, pid_start, rootfs
        self.created, self.owner, self.owner_start = created, owner, owner_start
        self.cgroup, self.cgroup_parent_levels = cgroup, cgroup_parent_levels
        # An OCI container's bundle, annotations and hooks: what `state` and
        # `delete` need after the command that created it has gone.
        self.oci = oci

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.FIELDS}

    def alive(self) -> bool:
        return process.is_alive(self.pid, self.pid_start)

    def busy(self) -> bool:
        """Running, or still being started by a live process."""
        starting = self.pid == 0 and process.is_alive(self.owner, self.owner_start)
        return starting or self.alive()


def check_id(container_id: str) -> None:
    if not _valid_id(container_id):
        raise ConfigError(
            f"id: {container_id!r} is not a valid container id "
            "(letters, digits, '_', '.', '+', '-'; at most 128; not starting with a symbol)"
        )


class StateStore:
    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = root
        self._claims: dict[str, int] = {}  # id -> its flocked directory, until write_claim

    def path(self, container_id: str) -> str:
        check_id(container_id)
        return os.path.join(self.root, container_id)

    def _locked(self) -> _Lock:
        return _Lock(self.root)

    def create(self, container_id: str, rootfs: str, cgroup: str = "", cgroup_parent_levels: int = 0,
               on_stale: Callable[[State], None] | None = None, pid: int = 0) -> State:
        """Claim ``container_id``: its directory, and a state of no process yet (or ``pid``'s, made ahead).

        Without ``pid`` the state is only returned: ``write_claim`` writes
        it, while the container's init is being cloned, so that the request
        for the clone goes out sooner. Until then the directory holds no
        state and its claim is an flock on it, which ends with its process.
        A stale claim (its process is gone) is handed to ``on_stale``, which
        removes what the state points at, then replaced.
        """
        directory = self.path(container_id)
        with self._locked():
            if os.path.lexists(directory):
                old = self.load(container_id)
                if _held(directory) if old is None else old.busy():
                    raise ContainerExistsError(f"container id {container_id} is already in use")
                if on_stale is not None:
                    on_stale(old or State(container_id))
                remove_tree(directory)
            os.mkdir(directory, 0o700)
            state = State(container_id, pid=pid, pid_start=process.start_time(pid) or 0 if pid else 0,
                          rootfs=rootfs, created=time.time(), owner=os.getpid(),
                          owner_start=process.own_start_time(), cgroup=cgroup,
                          cgroup_parent_levels=cgroup_parent_levels)
            if pid:
                self._write(os.path.join(directory, "state.json"), state)
            else:
                claim = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # an operation on the id (delete ...) opened it meanwhile
                    os.close(claim)
                    remove_tree(directory)
                    raise ContainerExistsError(f"container id {container_id} is already in use") from None
                self._claims[container_id] = claim
            return state

    def write_claim(self, state: State) -> None:
        """The first state of a claim made without a process: written, the flock is let go.

        No rename: a reader sees no state or this one (an empty file reads
        as none), and creators, the only readers who act on it, hold the
        root lock and find the flock held until the write is done.
        """
        claim = self._claims.pop(state.id, None)
        if claim is None:
            return
        try:
            self._write(os.path.join(self.path(state.id), "state.json"), state)
        finally:
            _let_go(claim)

    def save(self, state: State) -> None:
        """Replace the state atomically: readers see the old or the new one."""
        directory = self.path(state.id)
        temporary = os.path.join(directory, ".state.json.tmp")
        self._write(temporary, state)
        os.rename(temporary, os.path.join(directory, "state.json"))

    @staticmethod
    def _write(path: str, state: State) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, ascii_json(state.as_dict()).encode())
        finally:
            os.close(fd)

    def load(self, container_id: str) -> State | None:
        try:
            with open(os.path.join(self.path(container_id), "state.json"), encoding="utf-8") as handle:
                raw = loads(handle.read())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None
        return State(**{k: v for k, v in raw.items() if k in State.FIELDS})

    def load_running(self, container_id: str) -> State:
        state = self.load(container_id)
        if state is None or not state.alive():
            raise NotRunningError(f"Container is not running: {container_id}")
        return state

    def remove(self, container_id: str) -> None:
        claim = self._claims.pop(container_id, None)
        with self._locked():
            remove_tree(self.path(container_id))
            if claim is not None:
                _let_go(claim)

    def locked(self, container_id: str) -> _IdLock:
        """Hold while operating on ``container_id``: concurrent operations on it wait their turn."""
        return _IdLock(self.path(container_id))

    def ids(self) -> list[str]:
        try:
            return sorted(name for name in os.listdir(self.root) if _valid_id(name))
        except FileNotFoundError:
            return []


class _IdLock:
    """flock on the id's own directory: one operation on a container at a time (start, delete, pause ...)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.fd = -1

    def __enter__(self) -> None:
        try:
            self.fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # no container: nothing to serialise (the operation says so)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc_info: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)


class _Lock:
    """flock on <root>/.lock, for the short moments that create or remove an id."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.fd = -1

    def __enter__(self) -> None:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self.fd = os.open(os.path.join(self.root, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc_info: object) -> None:
        os.close(self.fd)


def _held(directory: str) -> bool:
    """Whether a live process holds the claim on an id's directory that has no state yet."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _let_go(claim: int) -> None:
    """LOCK_UN, not just close: an init cloned meanwhile shares the descriptor until it execs."""
    try:
        fcntl.flock(claim, fcntl.LOCK_UN)
    finally:
        os.close(claim)


def remove_tree(directory: str) -> None:
    """Remove an id's directory: its layout is ours and flat, no shutil needed.

    The directory is only ever mounted on inside the container's own mount
    namespace, so the host has nothing mounted here to detach.
    """
    try:
        os.unlink(os.path.join(directory, "state.json"))
        os.rmdir(directory)
        return
    except OSError:
        pass  # something else is there, or a part is missing: the general way
    try:
        for entry in os.scandir(directory):
            if entry.is_dir(follow_symlinks=False):
                os.rmdir(entry.path)
            else:
                os.unlink(entry.path)
        os.rmdir(directory)
    except FileNotFoundError:
        pass
