"""``exec``: run a new process in a running container, as runc exec does.

Without ``--process`` the process is the container's own (its bundle's
config.json) with the command line's args, env, user, cwd and caps.
"""

from __future__ import annotations

from execdriver.cli.flags import Flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SYNOPSIS = "execdriver exec [flags] ID [COMMAND...]"
ERROR_EXIT = 255  # runc exec's, apart from the process's own exit codes
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
    Flag("--additional-gids", "-g", kind="append", metavar="GID", help="add a supplementary group"),
    Flag("--process-label", default="", metavar="LABEL", help="the process's SELinux label"),
    Flag("--apparmor", default="", metavar="PROFILE", help="the process's AppArmor profile"),
    Flag("--cgroup", kind="append", metavar="[CONTROLLER[,CONTROLLER]:]PATH",
         help="join this cgroup below the container's instead"),
    Flag("--ignore-paused", kind="bool", help="exec into a paused container (the process waits for resume)"),
    Flag("--help", "-h", kind="bool", help="show this help"),
)


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    from execdriver.cli.flags import UsageError
    from execdriver.cli.oci.common import preserve_fds, runtime
    from execdriver.oci.runtime import ExecOptions

    if not args:
        raise UsageError("exec: expects ID [COMMAND...]")
    container_id, command = args[0], args[1:]
    preserve = preserve_fds(options, "exec")
    oci = runtime(global_options)
    if options["process"]:
        if command:
            raise UsageError("exec: give the command or --process, not both")
        from execdriver.oci.process import read_object

        process: dict[str, Any] | None = read_object(str(options["process"]), "--process")
        if options["tty"]:
            process["terminal"] = True  # type: ignore[index]
        changes = None
    else:
        if not command:
            raise UsageError("exec: no command to run: give it after the ID, or --process FILE")
        process = None
        changes = ExecOptions(command, env=[str(e) for e in options["env"] or ()],  # type: ignore[attr-defined]
                              user=str(options["user"]), cwd=str(options["cwd"]),
                              cap=[str(c) for c in options["cap"] or ()],  # type: ignore[attr-defined]
                              no_new_privs=bool(options["no_new_privs"]), tty=bool(options["tty"]),
                              additional_gids=_gids(options["additional_gids"]),
                              process_label=str(options["process_label"]), apparmor=str(options["apparmor"]))
    spec = oci.exec_spec(container_id, process, changes, preserve,
                         sub_cgroups=[str(c) for c in options["cgroup"] or ()])  # type: ignore[attr-defined]
    detach, pid_file = bool(options["detach"]), str(options["pid_file"])
    return oci.exec(container_id, spec, detach=detach, pid_file=pid_file, console_socket=str(options["console_socket"]),
                    ignore_paused=bool(options["ignore_paused"]))


def _gids(values: object) -> list[int]:
    from execdriver.cli.flags import UsageError

    gids = [str(value) for value in values or ()]  # type: ignore[attr-defined]
    for gid in gids:
        if not gid.isdigit():
            raise UsageError(f"exec: --additional-gids {gid}: not a group id")
    return [int(gid) for gid in gids]
