"""``pause``: freeze every process of a container."""

from __future__ import annotations

from execdriver.cli.flags import Flag
from execdriver.cli.oci.common import one_id, store

SYNOPSIS = "execdriver pause ID"
DESCRIPTION = "Freeze every process of a container (the freezer cgroup)."
FLAGS = (Flag("--help", "-h", kind="bool", help="show this help"),)


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    from execdriver.native import container

    container.pause(store(global_options), one_id(args, "pause"))
    return 0
