"""``start``: run the process of a created container."""

from __future__ import annotations

from execdriver.cli.flags import Flag
from execdriver.cli.oci.common import one_id, runtime

SYNOPSIS = "execdriver start ID"
DESCRIPTION = "Start the process of a created container."
FLAGS = (Flag("--help", "-h", kind="bool", help="show this help"),)


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    runtime(global_options).start(one_id(args, "start"))
    return 0
