"""``create``: set a container up from its bundle and leave it waiting for ``start``."""

from __future__ import annotations

from execdriver.cli.flags import Flag
from execdriver.cli.oci.common import one_id, preserve_fds, runtime

SYNOPSIS = "execdriver create [flags] ID"
DESCRIPTION = "Create a container from an OCI bundle; its process starts with `execdriver start`."
FLAGS = (
    Flag("--bundle", "-b", default=".", metavar="DIR", help="the bundle (default: the current directory)"),
    Flag("--pid-file", default="", metavar="FILE", help="write the container's host pid to FILE"),
    Flag("--console-socket", default="", metavar="SOCKET", help="where to send the pty master (terminal)"),
    Flag("--no-pivot", kind="bool", help="move the root onto / and chroot, not pivot_root (a root on an initramfs)"),
    Flag("--no-new-keyring", kind="bool", help="do not create a session keyring (none is created)"),
    Flag("--preserve-fds", default="0", metavar="N", help="pass N more descriptors from 3 on"),
    Flag("--help", "-h", kind="bool", help="show this help"),
)


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    runtime(global_options).create(one_id(args, "create"), str(options["bundle"]),
                                   console_socket=str(options["console_socket"]), pid_file=str(options["pid_file"]),
                                   preserve_fds=preserve_fds(options, "create"), no_pivot=bool(options["no_pivot"]))
    return 0
