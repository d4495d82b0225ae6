"""What the OCI verbs share: the state store, the spawner, pid files."""

from __future__ import annotations

import os

from execdriver.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from execdriver.native.spec import Process
    from execdriver.native.state import StateStore


def store(global_options: dict[str, object]) -> StateStore:
    from execdriver.native.state import StateStore

    return StateStore(str(global_options["root"]))


def one_id(args: list[str], verb: str) -> str:
    from execdriver.cli.flags import UsageError

    if len(args) != 1:
        raise UsageError(f"{verb}: expects exactly one container id, got {len(args)} arguments")
    return args[0]


def write_pid_file(path: str, pid: int) -> None:
    """The init's host pid, without a newline, as runc writes it (atomically)."""
    temporary = f"{path}.tmp{os.getpid()}"
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(str(pid))
        os.rename(temporary, path)
    except OSError as err:
        raise ConfigError(f"--pid-file {path}: {err.strerror}") from None


def state_json(store: StateStore, container_id: str) -> dict[str, object]:
    """The runtime spec's state of the container (runc's fields, too)."""
    from execdriver.gojson import rfc3339nano_from
    from execdriver.native import container

    state = store.load(container_id)
    if state is None:
        from execdriver.errors import NotRunningError

        raise NotRunningError(f"container {container_id} does not exist")
    current = container.status(store, state)
    oci = state.oci or {}
    return {
        "ociVersion": "1.0.2",
        "id": state.id,
        "pid": state.pid if current != "stopped" else 0,
        "status": current,
        "bundle": oci.get("bundle", ""),
        "rootfs": state.rootfs,
        "created": rfc3339nano_from(state.created),
        "owner": "",
        "annotations": oci.get("annotations") or {},
    }


def console_socket(process: Process, path: str, verb: str) -> int:
    """Connect the engine's console socket for a terminal process (shared with exec): -1 without one."""
    from execdriver.cli.flags import UsageError

    if not process.terminal:
        if path:
            raise UsageError(f"{verb}: --console-socket is for a process with a terminal (process.terminal)")
        return -1
    if not path:
        raise UsageError(f"{verb}: a process with a terminal needs --console-socket, where its pty master goes")
    from execdriver.errors import ConfigError
    from execdriver.linux import terminal

    try:
        fd = terminal.connect(path)
    except OSError as err:
        raise ConfigError(f"--console-socket {path}: {err.strerror}") from None
    process.console_socket = fd
    return fd
