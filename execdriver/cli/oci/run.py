"""``run``: create and start a container; in the foreground, wait for it and delete it."""

from __future__ import annotations

from execdriver.cli.flags import Flag
from execdriver.cli.oci import create
from execdriver.cli.oci.common import one_id, preserve_fds, runtime

SYNOPSIS = "execdriver run [flags] ID"
DESCRIPTION = "Create and start a container; without --detach, wait for it, delete it, exit with its status."
FLAGS = (
    *(flag for flag in create.FLAGS if flag.dest != "help"),
    Flag("--detach", "-d", kind="bool", help="return once the container runs"),
    Flag("--keep", kind="bool", help="do not delete the container when it exits"),
    Flag("--help", "-h", kind="bool", help="show this help"),
)


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    return runtime(global_options).run(one_id(args, "run"), str(options["bundle"]), detach=bool(options["detach"]),
                                       keep=bool(options["keep"]), console_socket=str(options["console_socket"]),
                                       pid_file=str(options["pid_file"]), preserve_fds=preserve_fds(options, "run"),
                                       no_pivot=bool(options["no_pivot"]))
