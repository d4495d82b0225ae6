"""What every cgroup manager offers, and the file plumbing they share."""

from __future__ import annotations

import abc
import errno
import os
import time

from execdriver.linux import process, read_file
from execdriver.linux.cgroups import CgroupError, Limits

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_RMDIR_TIMEOUT = 5.0
_FREEZE_TIMEOUT = 10.0


def read(path: str) -> str:
    return read_file(path).decode().strip()


def read_int(path: str, default: int = 0) -> int:
    """An integer file; "max" and absent files read as ``default``."""
    try:
        text = read(path)
    except OSError:
        return default
    return default if text == "max" else int(text)


def read_map(path: str) -> dict[str, int]:
    """A "key value" per line file (memory.stat, cpu.stat ...)."""
    try:
        text = read(path)
    except OSError:
        return {}
    result = {}
    for line in text.split("\n"):
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            result[key] = int(value)
    return result


def write(path: str, value: str | int, what: str) -> None:
    write_each(path, [(value, what)])


def write_each(path: str, values: list[tuple[str | int, str]]) -> None:
    """Each (value, what) in its own write(2), through one open of ``path``.

    A cgroup file takes one value per write (a device rule, say); opening
    it once for all saves a start two system calls per rule.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CgroupError(f"{values[0][1]}: this host's cgroups have no {os.path.basename(path)}") from None
    except OSError as err:  # (EACCES: a user's, outside its delegated subtree)
        raise CgroupError(f"{values[0][1]}: opening {path}: {err.strerror}", err.errno or 0) from None
    try:
        for value, what in values:
            try:
                os.write(fd, str(value).encode())
            except OSError as err:
                raise CgroupError(f"{what}: writing {value} to {path}: {err.strerror}", err.errno or 0) from None
    finally:
        os.close(fd)


class Accounting:
    """What a cgroup has used, from three files opened once and read again with pread:
    (CPU time in nanoseconds, peak memory in bytes, OOM kills). A file missing counts 0."""

    def __init__(self, files: list[tuple[str, str, int]]) -> None:
        """``files``: the CPU's, the peak's and the OOM count's, each (path, its key if a flat
        keyed file, else "", the unit in the wanted one)."""
        self._files: list[tuple[int, str, int]] = []
        for path, key, scale in files:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                fd = -1
            self._files.append((fd, key, scale))

    def read(self) -> tuple[int, int, int]:
        values = [0, 0, 0]
        for index, (fd, key, scale) in enumerate(self._files):
            if fd < 0:
                continue
            try:
                text = os.pread(fd, 4096, 0).decode()
            except OSError:
                continue
            if key:
                text = next((line.split()[1] for line in text.splitlines() if line.startswith(key + " ")), "0")
            values[index] = int(text.strip() or 0) * scale
        return values[0], values[1], values[2]

    def close(self) -> None:
        for fd, _, _ in self._files:
            if fd >= 0:
                os.close(fd)
        self._files = []


def remove_dir(path: str) -> None:
    """rmdir a cgroup and any made below it (by the container: runc removes them too), waiting
    while its last tasks finish exiting."""
    deadline = time.monotonic() + _RMDIR_TIMEOUT
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as err:
            if err.errno != errno.EBUSY or time.monotonic() > deadline:
                raise CgroupError(f"cannot remove cgroup {path}: {err.strerror}") from None
            for below, _, _ in sorted(os.walk(path), key=lambda entry: len(entry[0]), reverse=True):
                if below != path:
                    try:
                        os.rmdir(below)
                    except OSError:
                        pass  # its tasks are still exiting: the next round
            time.sleep(0.002)


def make_dirs(path: str, created: list[str]) -> None:
    """mkdir -p that notes which directories it made (and may remove)."""
    missing = []
    probe = path
    while not os.path.isdir(probe):
        missing.append(probe)
        probe = os.path.dirname(probe)
    for directory in reversed(missing):
        for _ in range(3):  # a concurrent destroy may remove a parent under us
            try:
                os.mkdir(directory, 0o755)
                created.append(directory)
                break
            except FileExistsError:
                break
            except FileNotFoundError:
                os.makedirs(os.path.dirname(directory), 0o755, exist_ok=True)


class Manager(abc.ABC):
    """One container's cgroup. ``path`` is relative to each hierarchy's root."""

    version: int

    def __init__(self, path: str) -> None:
        self.path = path.strip("/")
        if not self.path or ".." in self.path.split("/"):
            raise CgroupError(f"cgroup path {path!r}: must name a cgroup below the root")

    @abc.abstractmethod
    def directories(self) -> list[str]:
        """The container's directory in every hierarchy it uses."""

    def create(self, limits: Limits) -> None:
        """Make the cgroup and apply ``limits``; on error nothing is left."""
        created: list[str] = []
        try:
            for directory in self.directories():
                make_dirs(directory, created)
            self._prepare(limits)
            self.set(limits)
        except BaseException:
            for directory in self.directories():
                try:
                    remove_dir(directory)
                except CgroupError:
                    pass
            self.remove_created(created)
            raise

    @abc.abstractmethod
    def _prepare(self, limits: Limits) -> None:
        """What a new cgroup needs before its limits: v1 a cpuset, v2 its controllers delegated."""

    @abc.abstractmethod
    def set(self, limits: Limits, *, running: bool = False) -> None:
        """Apply the set fields of ``limits``; ``running`` checks lowering memory."""

    def add(self, pid: int) -> None:
        """Move ``pid`` (and so its future children) into the cgroup."""
        for directory in self.directories():
            write(os.path.join(directory, "cgroup.procs"), pid, "cgroup")

    def join_files(self) -> list[str]:
        """Where a process writes "0" to move itself in (v1 overrides: its tasks files)."""
        return [os.path.join(directory, "cgroup.procs") for directory in self.directories()]

    def sub_join_files(self, subs: dict[str, str]) -> list[str]:
        """The cgroup.procs files of the sub-cgroups ``subs`` names (runc exec --cgroup).

        ``subs``: controller -> path below the container's cgroup, "" for
        every controller (cgroup v2 has only that). Refuses a path that
        leaves the container's cgroup or a controller it does not use.
        """
        if set(subs) - {""}:
            raise CgroupError(f"unknown controller {min(set(subs) - {''})} in SubCgroupPaths")
        return [os.path.join(_below(directory, subs[""]), "cgroup.procs") for directory in self.directories()]

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.directories())

    def pids(self) -> list[int]:
        """Every process in the cgroup and the cgroups below it."""
        found: set[int] = set()
        top = self.directories()[0]
        for directory, _, _ in os.walk(top):
            try:
                text = read(os.path.join(directory, "cgroup.procs"))
            except OSError:
                continue
            found.update(int(line) for line in text.split())
        return sorted(found)

    @abc.abstractmethod
    def freeze(self) -> None: ...

    @abc.abstractmethod
    def thaw(self) -> None: ...

    @abc.abstractmethod
    def frozen(self) -> bool: ...

    @abc.abstractmethod
    def stats(self) -> dict[str, Any]:
        """libcontainer's cgroups.Stats, as JSON-ready data."""

    @abc.abstractmethod
    def memory_limit(self) -> int: ...

    @abc.abstractmethod
    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer killed in the cgroup."""

    @abc.abstractmethod
    def accounting(self) -> Accounting:
        """Its CPU time, peak memory and OOM kills, the files opened now (read them at will)."""

    @abc.abstractmethod
    def oom_watch(self) -> tuple[int, int] | None:
        """(fd, poll events) that fire on an OOM event, None if not available."""

    def kill(self) -> None:
        """SIGKILL every process in the cgroup, and wait until they are gone."""
        deadline = time.monotonic() + _RMDIR_TIMEOUT
        while True:
            pids = self.pids()
            live = [pid for pid in pids if not process.is_zombie(pid)]
            if not live or time.monotonic() > deadline:
                return
            for pid in live:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            time.sleep(0.002)

    def missing_ancestors(self) -> int:
        """How many of the cgroup's ancestors are missing in every hierarchy it uses.

        Creating the cgroup makes them; removing it may take them away again
        (when empty). An ancestor that exists already is its maker's.
        """
        counts = []
        for directory in self.directories():
            count, parent = 0, os.path.dirname(directory)
            while not os.path.isdir(parent):
                count, parent = count + 1, os.path.dirname(parent)
            counts.append(count)
        return min(counts)

    def destroy(self, parent_levels: int = 0) -> None:
        """Remove the cgroup everywhere, then up to ``parent_levels`` ancestors if empty.

        Only ancestors the runtime made are removed so (spec.py counts
        them); one that existed before is its maker's.
        """
        for directory in self.directories():
            remove_dir(directory)
            parent = directory
            for _ in range(parent_levels):
                parent = os.path.dirname(parent)
                try:
                    os.rmdir(parent)
                except OSError as err:
                    if err.errno not in (errno.EBUSY, errno.ENOTEMPTY, errno.ENOENT):
                        raise CgroupError(f"cannot remove cgroup {parent}: {err.strerror}") from None
                    break

    def wait_frozen(self, want: bool) -> None:
        deadline = time.monotonic() + _FREEZE_TIMEOUT
        while self.frozen() != want:
            if time.monotonic() > deadline:
                raise CgroupError(f"cgroup {self.path}: the freezer did not reach {'FROZEN' if want else 'THAWED'}")
            time.sleep(0.001)

    @staticmethod
    def remove_created(created: list[str]) -> None:
        for directory in sorted(created, key=len, reverse=True):
            try:
                os.rmdir(directory)
            except OSError:
                pass  # not empty: another container uses it


def _below(directory: str, sub: str) -> str:
    """``directory``/``sub``, refused if it is not within ``directory``."""
    joined = os.path.normpath(os.path.join(directory, sub.lstrip("/")))
    if joined != directory and not joined.startswith(directory.rstrip("/") + "/"):
        raise CgroupError(f"{sub} is not a sub cgroup path")
    return joined
