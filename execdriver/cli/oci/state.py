"""``state``: the runtime spec's state of a container, as JSON."""

from __future__ import annotations

from execdriver.cli.flags import Flag
from execdriver.cli.oci.common import one_id, runtime

SYNOPSIS = "execdriver state ID"
DESCRIPTION = "Print the state of a container (the OCI runtime spec's JSON)."
FLAGS = (Flag("--help", "-h", kind="bool", help="show this help"),)


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    from execdriver.gojson import pretty_json

    print(pretty_json(runtime(global_options).state(one_id(args, "state"))))
    return 0
