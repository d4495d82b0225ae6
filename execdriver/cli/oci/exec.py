"""``exec``: run a process in a running container (arrives with exec support)."""

from __future__ import annotations

from execdriver.cli.flags import Flag

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
    from execdriver.errors import UnsupportedError

    raise UnsupportedError("exec: running a process in a running container is not supported yet")
