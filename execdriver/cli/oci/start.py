"""``start``: run the process of a created container."""

from __future__ import annotations

from execdriver.cli.flags import Flag
from execdriver.cli.oci.common import one_id, state_json, store

SYNOPSIS = "execdriver start ID"
DESCRIPTION = "Start the process of a created container."
FLAGS = (Flag("--help", "-h", kind="bool", help="show this help"),)


def start(global_options: dict[str, object], container_id: str) -> int:
    """Shared with ``run``: the startContainer and poststart hooks around the start."""
    from execdriver.native import container
    from execdriver.oci import hooks

    states = store(global_options)
    state = states.load(container_id)
    phase_hooks = (state.oci or {}).get("hooks") or {} if state is not None else {}
    if state is not None and phase_hooks.get("startContainer"):
        hooks.run("startContainer", phase_hooks, state_json(states, container_id), state.pid)
    state = container.start(states, container_id)
    if phase_hooks.get("poststart"):
        hooks.run("poststart", phase_hooks, state_json(states, container_id))
    return state.pid


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    start(global_options, one_id(args, "start"))
    return 0
