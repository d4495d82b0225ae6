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
from execdriver.linux import process, read_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from execdriver.linux.cgroups.base import Manager


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
              "cgroup_parent_levels", "cgroup_unified", "oci")

    def __init__(self, id: str, pid: int = 0, pid_start: int = 0, rootfs: str = "", created: float = 0.0,
                 owner: int = 0, owner_start: int = 0, cgroup: str = "", cgroup_parent_levels: int = 0,
                 oci: dict[str, Any] | None = None, cgroup_unified: bool = True) -> None:
        self.id, self.pid, self.pid_start, self.rootfs = id, pid, pid_start, rootfs
        self.created, self.owner, self.owner_start = created, owner, owner_start
        self.cgroup, self.cgroup_parent_levels = cgroup, cgroup_parent_levels
        self.cgroup_unified = cgroup_unified  # in a hybrid host's v2 hierarchy too (spec.Cgroup.unified)
        # An OCI container's bundle, annotations and hooks: what `state` and
        # `delete` need after the command that created it has gone.
        self.oci = oci

    def cgroup_manager(self) -> Manager:
        """The container's cgroup, as it was made."""
        from execdriver.linux import cgroups

        return cgroups.manager(self.cgroup, unified=self.cgroup_unified)

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


_SPARE = ".spare-"  # <root>/.spare-<pid>-<n>: an id's directory kept by process <pid> for its next claim
_spares_made = [0]  # across the process's stores: two drivers may share a root


class StateStore:
    """``spares``: how many removed id directories to keep for the next claims (the API's store).

    Each start then renames a directory rather than making one, and each
    end renames it back, where a mkdir and an rmdir cost a start 0.5 ms on
    this machine (see ``_take_spare``). Spares are removed by ``close``,
    at exit, or after a crash by the fork server or the next ``close``.
    """

    def __init__(self, root: str = DEFAULT_ROOT, spares: int = 0) -> None:
        self.root = root
        self._claims: dict[str, int] = {}  # id -> its flocked directory, until write_claim
        self._keep = spares
        self._spares: list[str] = []
        self._made = 0

    def path(self, container_id: str) -> str:
        check_id(container_id)
        return os.path.join(self.root, container_id)

    def _locked(self) -> _Lock:
        return _Lock(self.root)

    def create(self, container_id: str, rootfs: str, cgroup: str = "", cgroup_parent_levels: int = 0,
               on_stale: Callable[[State], None] | None = None, pid: int = 0, pid_start: int = 0,
               cgroup_unified: bool = True) -> State:
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
            if not self._take_spare(directory):
                os.mkdir(directory, 0o700)
            if pid and not pid_start:
                pid_start = process.start_time(pid) or 0
            state = State(container_id, pid=pid, pid_start=pid_start,
                          rootfs=rootfs, created=time.time(), owner=os.getpid(),
                          owner_start=process.own_start_time(), cgroup=cgroup,
                          cgroup_parent_levels=cgroup_parent_levels, cgroup_unified=cgroup_unified)
            if pid:
                self.save(state)
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

        Until it is written a reader finds no state: no file, an empty one,
        or a spare's state of another id, all read as none. Creators, the
        only readers who act on that, hold the root lock and find the flock
        held until the write is done.
        """
        claim = self._claims.pop(state.id, None)
        if claim is None:
            return
        try:
            self.save(state)
        finally:
            _let_go(claim)

    def save(self, state: State) -> None:
        """Rewrite the state in place, padded with spaces to at least its old length.

        Not a new file renamed over it: on ext4 such a rename makes the file
        system allocate the new file's block at once (auto_da_alloc), and
        removing the file then waits for a discard of that block where the
        file system is mounted with ``discard`` (this machine's root, and
        so /run and /tmp, are). A reader that catches the write half done
        finds no JSON and reads again (load).
        """
        path = os.path.join(self.path(state.id), "state.json")
        data = ascii_json(state.as_dict()).encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self._write(path, state)
            return
        try:
            old_size = os.fstat(fd).st_size
            os.pwrite(fd, data.ljust(old_size), 0)
        finally:
            os.close(fd)

    @staticmethod
    def _write(path: str, state: State) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, ascii_json(state.as_dict()).encode())
        finally:
            os.close(fd)

    def load(self, container_id: str) -> State | None:
        path = os.path.join(self.path(container_id), "state.json")
        for attempt in range(3):
            try:
                raw = loads(read_file(path).decode())
                break
            except (FileNotFoundError, NotADirectoryError):
                return None
            except ValueError:  # caught mid-write (save, write_claim): read again
                if attempt == 2:
                    return None
                time.sleep(0.001)
        if raw.get("id") != container_id:
            return None  # a spare taken for a claim, not rewritten yet (_take_spare)
        return State(**{k: v for k, v in raw.items() if k in State.FIELDS})

    def load_running(self, container_id: str) -> State:
        state = self.load(container_id)
        if state is None or not state.alive():
            raise NotRunningError(f"Container is not running: {container_id}")
        return state

    def remove(self, container_id: str, spare: bool = False) -> None:
        """Remove the id's directory; with ``spare`` (it holds state.json alone), keep it for a claim."""
        claim = self._claims.pop(container_id, None)
        with self._locked():
            directory = self.path(container_id)
            if not (spare and self._keep_spare(directory)):
                remove_tree(directory)
            if claim is not None:
                _let_go(claim)

    def _take_spare(self, directory: str) -> bool:
        """A kept directory renamed into place (under the root lock), instead of a new one.

        On this machine's root file system (ext4 without a journal, mounted
        with ``discard``) a new inode is found by stepping over every one
        deleted in the last seconds, and freeing a directory's block waits
        for its discard: in a loop of starts, 0.5 ms of each. A rename
        allocates and frees nothing. The spare's old state.json names another
        id, which ``load`` takes for no state until ``write_claim`` rewrites it.
        """
        while self._spares:
            try:
                os.rename(self._spares.pop(), directory)
                return True
            except OSError:
                continue  # removed meanwhile (close from another thread): the next one, or mkdir
        return False

    def _keep_spare(self, directory: str) -> bool:
        if len(self._spares) >= self._keep:
            return False
        try:
            info = os.lstat(directory)
            if info.st_mode & 0o7777 != 0o700 or info.st_uid != os.geteuid():
                return False
            if not self._made:
                import atexit

                atexit.register(self.close)
            self._made += 1
            _spares_made[0] += 1
            spare = os.path.join(self.root, f"{_SPARE}{os.getpid()}-{_spares_made[0]}")
            os.rename(directory, spare)
        except OSError:
            return False
        self._spares.append(spare)
        return True

    def close(self) -> None:
        """Remove the spares: this store's, and any whose process is gone.

        In a fork of the program (its atexit) the spares are the parent's: left to it.
        """
        if not os.path.isdir(self.root):
            return
        with self._locked():
            if self._spares and os.path.basename(self._spares[0]).startswith(f"{_SPARE}{os.getpid()}-"):
                while self._spares:
                    remove_tree(self._spares.pop())
            remove_spares(self.root, dead_only=True)

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
        path = os.path.join(self.root, ".lock")
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:  # the first use of the root
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
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


def remove_spares(root: str, pid: int = 0, dead_only: bool = False) -> None:
    """Remove the spare directories under ``root`` of process ``pid`` (any), or of processes gone."""
    try:
        names = [entry.name for entry in os.scandir(root) if entry.name.startswith(_SPARE)]
    except FileNotFoundError:
        return
    for name in names:
        owner_text = name[len(_SPARE):].partition("-")[0]
        owner = int(owner_text) if owner_text.isdigit() else 0
        if (pid and owner != pid) or (dead_only and (owner == os.getpid() or os.path.exists(f"/proc/{owner}"))):
            continue
        remove_tree(os.path.join(root, name))


def remove_tree(directory: str) -> None:
    """Remove an id's directory: its layout is ours and flat, no shutil needed.

    The directory is mounted on inside the container's own mount namespace;
    only a container without one has its root here in the host's (under
    rootfs.SHARED_ROOT), which is detached first, all of it.
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
                if entry.name == "rootfs":  # rootfs.SHARED_ROOT (os.path.ismount misses a bind of the same fs)
                    from execdriver.linux import syscalls

                    try:
                        syscalls.umount2(entry.path, syscalls.MNT_DETACH)  # (and every mount below it)
                    except OSError:
                        pass  # (EINVAL: not mounted)
                os.rmdir(entry.path)
            else:
                os.unlink(entry.path)
        os.rmdir(directory)
    except FileNotFoundError:
        pass
