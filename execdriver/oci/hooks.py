"""OCI hooks: each one a program, run with the container's state on its stdin.

prestart and createRuntime run in the runtime's namespaces once the
container's namespaces exist; createContainer in the container's mount
namespace (entered with setns, which also makes its root ours);
startContainer is the init's to run (init._start_container_hooks), as
runc's does, after start and as the container's process; poststart after
the start, poststop at delete. A hook that fails or outlives its timeout
fails the operation; poststop hooks all run, a failure a warning (runc's).
"""

from __future__ import annotations

import os

from execdriver.errors import ConfigError, ContainerError
from execdriver.gojson import go_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PHASES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
IN_CONTAINER = ("createContainer",)


def parse(config: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The config's hooks, checked: a path, and args, env, timeout of the right kinds."""
    hooks = config.get("hooks") or {}
    if not isinstance(hooks, dict):
        raise ConfigError("hooks: expected an object")
    result = {}
    for phase, entries in hooks.items():
        if phase not in PHASES:
            raise ConfigError(f"hooks.{phase}: unknown hook phase")
        if not isinstance(entries, list):
            raise ConfigError(f"hooks.{phase}: expected an array")
        for index, hook in enumerate(entries):
            where = f"hooks.{phase}[{index}]"
            if not isinstance(hook, dict) or not isinstance(hook.get("path"), str) or not hook["path"].startswith("/"):
                raise ConfigError(f"{where}.path: needs an absolute path")
            for key in ("args", "env"):
                items = hook.get(key, [])
                if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
                    raise ConfigError(f"{where}.{key}: expected an array of strings")
            timeout = hook.get("timeout")
            if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0):
                raise ConfigError(f"{where}.timeout: must be a positive number of seconds")
        result[phase] = entries
    return result


def run(phase: str, hooks: dict[str, list[dict[str, Any]]], state: dict[str, Any], pid: int = 0,
        every: bool = False) -> list[str]:
    """Run the hooks of ``phase`` in order; raise on the first that fails.

    ``every``: run them all whatever fails, and return what failed (poststop).
    """
    entries = hooks.get(phase) or []
    failures: list[str] = []
    stdin = go_json(state).encode() if entries else b""
    for index, hook in enumerate(entries):
        try:
            _run_one(phase, index, hook, stdin, pid)
        except ContainerError as err:
            if not every:
                raise
            failures.append(str(err))
    return failures


def _run_one(phase: str, index: int, hook: dict[str, Any], stdin: bytes, pid: int) -> None:
    import subprocess

    enter = None
    if phase in IN_CONTAINER and pid:
        namespace = f"/proc/{pid}/ns/mnt"

        def enter(namespace: str = namespace) -> None:
            from execdriver.linux import syscalls

            fd = os.open(namespace, os.O_RDONLY)
            syscalls.setns(fd, syscalls.CLONE_NEWNS)
            os.close(fd)
            os.chdir("/")

    args = hook.get("args") or [hook["path"]]
    try:
        result = subprocess.run(args, executable=hook["path"], input=stdin, env=_env(hook.get("env")),
                                capture_output=True, timeout=hook.get("timeout"), preexec_fn=enter,
                                check=False)
    except subprocess.TimeoutExpired:
        raise ContainerError(f"error running hook #{index} ({phase}, {hook['path']}): "
                             f"hook ran past specified timeout of {hook.get('timeout')}.0s") from None
    except OSError as err:
        raise ContainerError(f"error running hook #{index} ({phase}, {hook['path']}): {err.strerror}") from None
    if result.returncode != 0:  # (runc's words, which engines show)
        output = (result.stderr or result.stdout).decode(errors="replace").strip()
        raise ContainerError(f"error running hook #{index} ({phase}, {hook['path']}): exit status "
                             f"{result.returncode}" + (f": {output}" if output else ""))


def _env(env: list[str] | None) -> dict[str, str]:
    return dict(entry.split("=", 1) for entry in env or [] if "=" in entry)
