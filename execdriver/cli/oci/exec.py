"""``exec``: run a new process in a running container, as runc exec does.

Without ``--process`` the process is the container's own (its bundle's
config.json) with the command line's args, env, user, cwd and caps.
"""

from __future__ import annotations

import os

from execdriver.cli.flags import Flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from execdriver.native.spec import ExecSpec
    from execdriver.native.state import StateStore

SYNOPSIS = "execdriver exec [flags] ID [COMMAND...]"
DESCRIPTION = "Run a new process inside a running container."
FLAGS = (
    Flag("--process", "-p", default="", metavar="FILE", help="the process, as the spec's JSON"),
    Flag("--tty", "-t", kind="bool", help="allocate a pseudo-terminal"),
    Flag("--console-socket", default="", metavar="SOCKET", help="where to send the pty master"),
    Flag("--detach", "-d", kind="bool", help="do not wait for the process"),
    Flag("--pid-file", default="", metavar="FILE", help="write the process's host pid to FILE"),
    Flag("--env", "-e", kind="append", metavar="K=V", help="set an environment variable"),
    Flag("--user", "-u", default="", metavar="UID[:GID]", help="run as this user"),
    Flag("--cwd", default="", metavar="DIR", help="working directory"),
    Flag("--cap", "-c", kind="append", metavar="CAP", help="add a capability"),
    Flag("--no-new-privs", kind="bool", help="set no_new_privileges"),
    Flag("--preserve-fds", default="0", metavar="N", help="pass N more descriptors from 3 on"),
    Flag("--help", "-h", kind="bool", help="show this help"),
)


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    from execdriver.cli.flags import UsageError
    from execdriver.cli.oci.common import console_socket, store, write_pid_file
    from execdriver.errors import NotRunningError
    from execdriver.native import container
    from execdriver.native.spawn import DirectSpawner
    from execdriver.oci import config as oci_config

    if not args:
        raise UsageError("exec: expects ID [COMMAND...]")
    container_id, command = args[0], args[1:]
    preserve = str(options["preserve_fds"])
    if not preserve.isdigit():
        raise UsageError(f"exec: --preserve-fds {preserve!r} is not a number")
    states = store(global_options)
    state = states.load(container_id)
    if state is None:
        raise NotRunningError(f"container {container_id} does not exist")
    try:
        with open(os.path.join(states.path(container_id), container.SECCOMP_PROGRAM), "rb") as handle:
            program: bytes | None = handle.read()
    except FileNotFoundError:
        program = None  # a container created before programs were kept
    oci = state.oci or {}
    if "process" in oci and program is not None:
        # As create kept them: the bundle may be gone, or its config.json changed, since.
        config: dict[str, Any] = {"process": oci["process"]}
    else:  # kept by an older execdriver: the bundle's config, its seccomp profile compiled again
        bundle = str(oci.get("bundle", ""))
        config = oci_config.load(bundle) if bundle else {}
    if options["process"]:
        if command:
            raise UsageError("exec: give the command or --process, not both")
        process = oci_config.read_object(str(options["process"]), "--process")
        if options["tty"]:
            process["terminal"] = True
    else:
        if not command:
            raise UsageError("exec: no command to run: give it after the ID, or --process FILE")
        process = _from_flags(config.get("process") or {}, command, options)
    spec = oci_config.exec_spec(container_id, process, config, program)
    spec.process.preserve_fds = int(preserve)
    pid_file = str(options["pid_file"])
    detach = bool(options["detach"])

    def started(pid: int) -> None:
        if pid_file:
            write_pid_file(pid_file, pid)
        if not detach:  # our child until we reap it: its pid cannot be reused meanwhile
            from execdriver.linux import signals

            for signum in signals.FORWARDED_SIGNALS:
                signals.signal_handle(signum, lambda number, _frame: _forward(pid, number))

    if spec.process.terminal and not options["console_socket"]:
        return _interactive(states, container_id, spec, detach, started)
    console = console_socket(spec.process, str(options["console_socket"]), "exec")
    try:
        return container.exec_process(states, DirectSpawner(), container_id, spec, (0, 1, 2), detach=detach,
                                      start=started)
    finally:
        if console >= 0:
            os.close(console)


def _interactive(states: StateStore, container_id: str, spec: ExecSpec, detach: bool,
                 started: Callable[[int], None]) -> int:
    """exec -t on our own terminal, as runc does without --console-socket."""
    from execdriver.cli.flags import UsageError
    from execdriver.cli.terminal import Interactive
    from execdriver.native import container
    from execdriver.native.spawn import DirectSpawner

    if detach:
        raise UsageError("exec: -t with -d needs --console-socket: there is no terminal of ours to serve")
    with Interactive() as interactive:
        interactive.attach(spec.process)
        return container.exec_process(states, DirectSpawner(), container_id, spec, interactive.console.stdio,
                                      start=started, serve=interactive.console.transfer)


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _from_flags(base: dict[str, Any], command: list[str], options: dict[str, object]) -> dict[str, Any]:
    """The container's process with the command line's changes, as runc exec makes it."""
    from execdriver.cli.flags import UsageError

    # A copy deep enough for what changes below (copy.deepcopy costs a millisecond of imports).
    process = dict(base)
    process["capabilities"] = {name: list(caps) for name, caps in (base.get("capabilities") or {}).items()}
    process["args"] = command
    process["terminal"] = bool(options["tty"])
    env = list(process.get("env") or [])
    for entry in options["env"] or ():  # type: ignore[attr-defined]
        key = str(entry).split("=", 1)[0]
        env = [e for e in env if e.split("=", 1)[0] != key] + [str(entry)]
    process["env"] = env
    if options["cwd"]:
        process["cwd"] = options["cwd"]
    process.setdefault("cwd", "/")
    if options["user"]:
        uid, _, gid = str(options["user"]).partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            raise UsageError(f"exec: --user {options['user']!r} must be UID[:GID], numbers")
        process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    caps = process.setdefault("capabilities", {})
    for cap in options["cap"] or ():  # type: ignore[attr-defined]
        for name in ("bounding", "effective", "permitted"):
            caps.setdefault(name, []).append(str(cap))
    if options["no_new_privs"]:
        process["noNewPrivileges"] = True
    return process
