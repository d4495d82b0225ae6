"""``resume``: thaw a paused container."""

from __future__ import annotations

from execdriver.cli.flags import Flag
from execdriver.cli.oci.common import one_id, store

SYNOPSIS = "execdriver resume ID"
DESCRIPTION = "Thaw a paused container."
FLAGS = (Flag("--help", "-h", kind="bool", help="show this help"),)


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    from execdriver.native import container

    container.unpause(store(global_options), one_id(args, "resume"))
    return 0
