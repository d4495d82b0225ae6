"""``delete``: remove a stopped container (with --force, any) and run its poststop hooks."""

from __future__ import annotations

import sys

from execdriver.cli.flags import Flag
from execdriver.cli.oci.common import one_id, store

SYNOPSIS = "execdriver delete [--force] ID"
DESCRIPTION = "Delete a container: its processes (with --force), cgroup and state."
FLAGS = (
    Flag("--force", "-f", kind="bool", help="kill the container first if it still runs"),
    Flag("--help", "-h", kind="bool", help="show this help"),
)


def delete(global_options: dict[str, object], container_id: str, force: bool) -> None:
    """Shared with ``run``."""
    from execdriver.errors import ExecDriverError, NotRunningError
    from execdriver.native import container
    from execdriver.oci import hooks

    states = store(global_options)
    state = container.delete(states, container_id, force)
    if state is None:
        if force:
            return
        raise NotRunningError(f"container {container_id} does not exist")
    oci = state.oci or {}
    if (oci.get("hooks") or {}).get("poststop"):
        document = {"ociVersion": "1.0.2", "id": container_id, "status": "stopped", "pid": 0,
                    "bundle": oci.get("bundle", ""), "annotations": oci.get("annotations") or {}}
        try:
            hooks.run("poststop", oci["hooks"], document)
        except ExecDriverError as err:  # the container is gone: warn, as runc does
            print(f"execdriver: warning: {err}", file=sys.stderr)


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    delete(global_options, one_id(args, "delete"), bool(options["force"]))
    return 0
