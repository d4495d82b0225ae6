"""``kill``: send a signal to a container's init (or, with --all, to all its processes)."""

from __future__ import annotations

import os

from execdriver.cli.flags import Flag, UsageError
from execdriver.cli.oci.common import store

SYNOPSIS = "execdriver kill [--all] ID [SIGNAL]"
DESCRIPTION = "Send SIGNAL (a number or a name; default SIGTERM) to the container."
FLAGS = (
    Flag("--all", "-a", kind="bool", help="signal every process of the container"),
    Flag("--help", "-h", kind="bool", help="show this help"),
)


def signal_number(text: str) -> int:
    """``9``, ``KILL``, ``SIGKILL`` or ``sigkill`` -> 9."""
    if text.isdigit():
        number = int(text)
        if 0 < number < 65:
            return number
    else:
        import signal

        name = text.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        value = getattr(signal, name, None)
        if isinstance(value, signal.Signals):
            return int(value)
    raise UsageError(f"kill: {text!r} is not a signal")


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    from execdriver.errors import NotRunningError
    from execdriver.linux import cgroups
    from execdriver.native import container

    if len(args) not in (1, 2):
        raise UsageError("kill: expects ID [SIGNAL]")
    signum = signal_number(args[1]) if len(args) == 2 else 15
    states = store(global_options)
    if not options["all"]:
        container.kill(states, args[0], signum)
        return 0
    state = states.load(args[0])
    if state is None or not state.cgroup:
        raise NotRunningError(f"container {args[0]} does not exist")
    for pid in cgroups.manager(state.cgroup).pids():
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    return 0
