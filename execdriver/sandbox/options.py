"""The settings every sandbox takes, checked once, and their defaults: safe without thought."""

from __future__ import annotations

import math
import os
import posixpath

from execdriver.errors import ConfigError

TYPE_CHECKING = False  # the sandbox command imports this module: nothing heavy on its start path
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from execdriver.linux.cgroups import Limits as CgroupLimits

MiB = 1 << 20

# The defaults: what a sandbox gets when its caller thinks of nothing.
MEMORY = 256 * MiB
CPUS = 1.0
PIDS = 64
TIMEOUT = 30.0
TMP_SIZE = 64 * MiB
USER = "nobody"
CWD = "/tmp"
NETWORKS = ("none", "host", "bridge")


class Limits:
    """Hard limits, by the kernel: ``memory`` in bytes (swap included: a sandbox gets none),
    ``cpus`` (a fraction of one CPU's time, or several), ``pids`` (processes and threads at
    once), ``tmp_size`` (bytes of /tmp, a tmpfs counted in ``memory`` too). None: no limit."""

    __slots__ = ("cpus", "memory", "pids", "tmp_size")

    def __init__(self, memory: int | None = MEMORY, cpus: float | None = CPUS, pids: int | None = PIDS,
                 tmp_size: int | None = TMP_SIZE) -> None:
        self.memory, self.cpus, self.pids, self.tmp_size = memory, cpus, pids, tmp_size
        for name, low in (("memory", 4 * MiB), ("pids", 1), ("tmp_size", 4096)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ConfigError(f"{name}: {value!r} is not a whole number of at least {low}")
        if self.cpus is not None and (not isinstance(self.cpus, (int, float)) or isinstance(self.cpus, bool)
                                      or not math.isfinite(self.cpus) or self.cpus < 0.01):
            raise ConfigError(f"cpus: {self.cpus!r} is not a number of at least 0.01")

    def __repr__(self) -> str:
        return f"Limits(memory={self.memory}, cpus={self.cpus}, pids={self.pids}, tmp_size={self.tmp_size})"

    def without_cgroup(self) -> Limits:
        """These limits less those a cgroup enforces (memory, CPU, pids): for a host that gives us none."""
        return Limits(None, None, None, self.tmp_size)

    def cgroup(self, device_rules: list[tuple[str, str]]) -> CgroupLimits:
        """As the cgroup managers take them."""
        from execdriver.linux.cgroups import Limits as CgroupLimits

        values: dict[str, object] = {"device_rules": device_rules}
        if self.memory is not None:
            values.update(memory=self.memory, memory_swap=self.memory)
        if self.cpus is not None:
            values.update(cpu_period=100_000, cpu_quota=max(1000, round(self.cpus * 100_000)))
        if self.pids is not None:
            values.update(pids_limit=self.pids)
        return CgroupLimits(**values)


def cgroup_available() -> bool:
    """Whether this process can make a cgroup for its sandboxes: root, or a user with a delegated
    cgroup v2 subtree (systemd gives each user session one)."""
    if os.geteuid() == 0:
        return True
    from execdriver.linux import cgroups

    return bool(cgroups.delegated_subtree())


NO_CGROUP = ("a user without privileges gets no cgroup on this host (no delegated cgroup v2 subtree): "
             "the default memory, CPU and pids limits are not applied")


def user_for_caller(user: str) -> str:
    """``user``, or for a caller without privileges, root: a rootless sandbox's user namespace maps
    the caller's own uid alone, as root (without any capability), so nobody does not exist there."""
    if os.geteuid() == 0:
        return user
    if user == USER:
        return "0"
    if user.partition(":")[0] not in ("0", "root"):
        raise ConfigError(f"user: {user!r}: a sandbox without privileges has only root (your own uid, "
                          "without capabilities) in its user namespace")
    return user


def timeout_of(timeout: float | None) -> float | None:
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not math.isfinite(timeout) or timeout <= 0):
        raise ConfigError(f"timeout: {timeout!r} is not a positive number of seconds")
    return timeout


def argv_of(args: str | Sequence[str] | None, code: str | None, python: str) -> list[str]:
    """``args`` as subprocess takes them (a string is one program, not a shell line), or ``code`` for ``python``."""
    if (args is None) == (code is None):
        raise ConfigError("give either args or code=")
    if code is not None:
        if not isinstance(code, str):
            raise ConfigError("code: not a string")
        return [python, "-I", "-c", code]
    argv = [args] if isinstance(args, str) else list(args or ())
    if not argv or not all(isinstance(arg, str) and "\0" not in arg for arg in argv):
        raise ConfigError(f"args: {args!r} is not a non-empty list of strings without NUL")
    return argv


def env_of(env: Mapping[str, str] | None, path: bool = True) -> list[str]:
    """KEY=VALUE lines; with ``path``, the default PATH unless given (spec.DEFAULT_PATH)."""
    from execdriver.native.spec import DEFAULT_PATH

    values = dict(env or {})
    for key, value in values.items():
        if not key or "=" in key or "\0" in key or "\0" in str(value):
            raise ConfigError(f"env: {key!r} is not a valid variable")
    if path:
        values.setdefault("PATH", DEFAULT_PATH)
    return [f"{key}={value}" for key, value in values.items()]


def files_of(files: Mapping[str, bytes | str] | None, cwd: str) -> list[tuple[str, bytes]]:
    """Each file's path in the sandbox (relative ones in ``cwd``) and its content.

    Only below /tmp, the sandbox's own tmpfs, which nothing has touched yet
    when they are written: nowhere else is both writable and free of what
    the rootfs put there (a planted symbolic link).
    """
    result = []
    for path, content in (files or {}).items():
        full = posixpath.normpath(posixpath.join(cwd, path))
        if not full.startswith("/tmp/") or "\0" in full:
            raise ConfigError(f"files: {path!r} is not below /tmp (relative paths are in cwd, {cwd})")
        data = content.encode() if isinstance(content, str) else content
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ConfigError(f"files: {path!r}: the content is not bytes or str")
        result.append((full, bytes(data)))
    return result


def check(cwd: str, user: str, network: str) -> None:
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise ConfigError(f"cwd: {cwd!r} is not an absolute path")
    if not isinstance(user, str) or not user:
        raise ConfigError(f"user: {user!r} is not a user name or uid[:gid]")
    if network not in NETWORKS:
        raise ConfigError(f"network: {network!r} is not one of {', '.join(NETWORKS)}")
