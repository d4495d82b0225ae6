"""An OCI config's process object: the spec's Process and Security, and an exec'd process's spec.

Kept apart from config.py, the whole config: ``exec`` reads a process
(the container's, as create kept it, or --process) and needs none of the
mounts, namespaces and limits, nor their code.
"""

from __future__ import annotations

import os
import posixpath

from execdriver.errors import ConfigError
from execdriver.gojson import loads
from execdriver.linux import RLIMITS, capabilities, syscalls
from execdriver.native.spec import CapabilitySets, ExecSpec, Process, Security

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = None) -> Any:
    """``obj[key]`` if it is a ``kind``, ``default`` if absent or null; else an error naming ``where.key``."""
    value = obj.get(key, default)
    if value is None:
        return default
    if (isinstance(value, bool) and kind is int) or not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ConfigError(f"{where}.{key}: expected {names}, got {type(value).__name__}")
    return value


def read_object(path: str, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; errors begin with ``what`` (config.json, --process)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"{what}: {path} does not exist") from None
    except OSError as err:
        raise ConfigError(f"{what}: {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{what}: not valid JSON: {err}") from None
    try:
        value = loads(text)
    except ValueError as err:
        raise ConfigError(f"{what}: not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what}: expected an object")
    return value


def _capabilities(process: dict[str, Any]) -> CapabilitySets:
    sets = get(process, "capabilities", dict, "process", {})
    result = []
    for name in CapabilitySets.NAMES:
        numbers = []
        for cap in get(sets, name, list, "process.capabilities", []):
            number = capabilities.NUMBERS.get(cap) if isinstance(cap, str) else None
            if number is None:
                raise ConfigError(f"process.capabilities.{name}: unknown capability {cap!r}")
            if number <= capabilities.last_cap():
                numbers.append(number)
        result.append(numbers)
    return CapabilitySets(*result)


def selinux_enabled() -> bool:
    return os.path.exists("/sys/fs/selinux/enforce")


def _rlimits(process: dict[str, Any]) -> list[tuple[int, int, int]]:
    result = []
    for index, entry in enumerate(get(process, "rlimits", list, "process", [])):
        where = f"process.rlimits[{index}]"
        kind = entry.get("type") if isinstance(entry, dict) else None
        name = kind[7:].lower() if isinstance(kind, str) and kind.startswith("RLIMIT_") and kind.isupper() else ""
        if name not in RLIMITS:
            raise ConfigError(f"{where}.type: unknown rlimit {kind!r}")
        result.append((RLIMITS[name], get(entry, "soft", int, where, 0), get(entry, "hard", int, where, 0)))
    return result


def process_fields(process: dict[str, Any], where: str = "process") -> tuple[Process, Security]:
    """A spec Process object: the container's, or an exec'd one's (its seccomp program comes from linux)."""
    terminal = get(process, "terminal", bool, where, False)
    size = get(process, "consoleSize", dict, where, {})
    console_size = (get(size, "height", int, f"{where}.consoleSize", 0),
                    get(size, "width", int, f"{where}.consoleSize", 0))
    apparmor = get(process, "apparmorProfile", str, where, "")
    if apparmor:
        from execdriver.linux import apparmor_enabled

        if not apparmor_enabled():  # as runc refuses it
            raise ConfigError(f"{where}.apparmorProfile: AppArmor is not enabled on this host; "
                              f"cannot apply {apparmor!r}")
    if get(process, "selinuxLabel", str, where, "") and selinux_enabled():
        raise ConfigError(f"{where}.selinuxLabel: SELinux labels are not supported by this runtime yet")
    args = get(process, "args", list, where, [])
    if not args or not all(isinstance(a, str) for a in args):
        raise ConfigError(f"{where}.args: needs at least the program to run, as strings")
    cwd = get(process, "cwd", str, where, "")
    if not cwd.startswith("/"):
        raise ConfigError(f"{where}.cwd: {cwd!r} must be an absolute path")
    user = get(process, "user", dict, where, {})
    uid, gid = get(user, "uid", int, f"{where}.user", 0), get(user, "gid", int, f"{where}.user", 0)
    extra_gids = get(user, "additionalGids", list, f"{where}.user", [])
    if get(user, "username", str, f"{where}.user", ""):
        raise ConfigError(f"{where}.user.username: only numeric users are supported on Linux")
    env = get(process, "env", list, where, [])
    if not all(isinstance(e, str) for e in env):
        raise ConfigError(f"{where}.env: expected strings of the form KEY=VALUE")
    sets = _capabilities(process)
    umask = get(user, "umask", int, f"{where}.user", None)
    io_priority = _io_priority(get(process, "ioPriority", dict, where, None), f"{where}.ioPriority")
    return (
        Process(list(args), list(env), f"{uid}:{gid}", posixpath.normpath(cwd),
                additional_gids=[g for g in extra_gids if isinstance(g, int)], terminal=terminal,
                console_size=console_size),
        Security(sets.bounding, capabilities.last_cap(), capability_sets=sets,
                 no_new_privileges=get(process, "noNewPrivileges", bool, where, False),
                 rlimits=_rlimits(process), oom_score_adj=get(process, "oomScoreAdj", int, where, None),
                 umask=0o022 if umask is None else umask,
                 apparmor_profile=apparmor,  # (the init asks for it on exec: /proc/self/attr/apparmor/exec)
                 io_priority=io_priority),
    )


def _io_priority(priority: dict[str, Any] | None, where: str) -> tuple[int, int] | None:
    """runtime-spec 1.2's process.ioPriority: a class of ioprio_set(2) and a level 0 (highest) to 7."""
    if priority is None:
        return None
    io_class = get(priority, "class", str, where, "")
    if io_class not in syscalls.IOPRIO_CLASSES:
        raise ConfigError(f"{where}.class: {io_class!r} is none of {', '.join(syscalls.IOPRIO_CLASSES)}")
    level = get(priority, "priority", int, where, 0)
    if not 0 <= level <= 7:
        raise ConfigError(f"{where}.priority: {level} is not a level from 0 to 7")
    return syscalls.IOPRIO_CLASSES[io_class], level


def exec_spec(container_id: str, process: dict[str, Any], config: dict[str, Any],
              program: bytes | None = None) -> ExecSpec:
    """An exec'd process: its own Process, the container's seccomp.

    ``program``: the container's compiled seccomp program as create kept it
    (b"": none); None compiles the config's profile again.
    """
    proc, security = process_fields(process)
    if program is None:
        program = seccomp_program(get(config, "linux", dict, "config", {}))
    security.seccomp_bpf = program or None
    return ExecSpec(container_id, proc, security)


def seccomp_listener(config: dict[str, Any]) -> tuple[str, str] | None:
    """The agent's socket and metadata for a profile that notifies (SCMP_ACT_NOTIFY), None otherwise."""
    profile = (config.get("linux") or {}).get("seccomp")
    if not isinstance(profile, dict):
        return None
    from execdriver.linux import seccomp

    if not seccomp.notifies(profile):
        return None
    return str(profile.get("listenerPath") or ""), str(profile.get("listenerMetadata") or "")


def seccomp_program(linux: dict[str, Any], cache_dir: str = "") -> bytes | None:
    """The profile compiled here, once (or found in ``cache_dir``); the init only loads the program."""
    profile = get(linux, "seccomp", dict, "linux", None)
    if not profile:
        return None
    from execdriver.linux import seccomp

    return seccomp.compile_oci(profile, cache_dir=cache_dir)
