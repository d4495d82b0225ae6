"""``delete``: remove a stopped container (with --force, any) and run its poststop hooks."""

from __future__ import annotations

from execdriver.cli.flags import Flag
from execdriver.cli.oci.common import one_id, runtime

SYNOPSIS = "execdriver delete [--force] ID"
DESCRIPTION = "Delete a container: its processes (with --force), cgroup and state."
FLAGS = (
    Flag("--force", "-f", kind="bool", help="kill the container first if it still runs"),
    Flag("--help", "-h", kind="bool", help="show this help"),
)


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    runtime(global_options).delete(one_id(args, "delete"), bool(options["force"]))  # (hooks' failures: log.warn)
    return 0
