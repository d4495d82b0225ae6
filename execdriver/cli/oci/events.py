"""``events``: a container's statistics (and OOM events), as runc prints them."""

from __future__ import annotations

import gc
import time

from execdriver.cli.flags import Flag, UsageError
from execdriver.cli.oci.common import one_id, store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

SYNOPSIS = "execdriver events [--stats] [--interval DURATION] ID"
DESCRIPTION = "Print the container's stats once (--stats), or every interval and its OOM events until it stops."
FLAGS = (
    Flag("--stats", kind="bool", help="print one stats event and exit"),
    Flag("--interval", default="5s", metavar="DURATION", help="time between stats events (default 5s)"),
    Flag("--help", "-h", kind="bool", help="show this help"),
)


def _seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return float(text[: -len(unit)]) * units[unit]
    raise UsageError(f"events: --interval {text}: a duration like 5s or 500ms")


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    """A stats event now and every interval, an OOM event as it happens, until the container stops."""
    import os
    import select

    from execdriver.errors import NotRunningError
    from execdriver.gojson import go_json
    from execdriver.native import container

    container_id = one_id(args, "events")
    interval = _seconds(str(options["interval"]))
    states = store(global_options)
    if options["stats"]:
        _print_stats(go_json, container.stats(states, container_id), container_id)
        return 0
    gc.enable()  # a stream that may run for days (bin/execdriver turned the collector off)
    state = states.load_running(container_id)
    try:
        exited = os.pidfd_open(state.pid)
    except ProcessLookupError:
        return 0
    poller = select.poll()
    poller.register(exited, select.POLLIN)
    callbacks = {}
    if state.cgroup:
        from execdriver.native.launchers import oom_watches

        manager = state.cgroup_manager()

        def on_oom() -> None:
            print(go_json({"type": "oom", "id": container_id}), flush=True)

        # (Kills counted before the stream began are not its events; re-armed, and a cgroup gone, there.)
        for fd, events, check in oom_watches(manager, on_oom, [], kills_before=manager.oom_kills()):
            poller.register(fd, events)
            callbacks[fd] = check
    deadline = time.monotonic()
    try:
        while True:
            ready = dict(poller.poll(max(0.0, deadline - time.monotonic()) * 1000))
            if exited in ready:
                for check in callbacks.values():  # the OOM that ended it may wake its watch only now
                    check()
                return 0  # the container stopped: the stream ends, as runc's
            for fd in ready.keys() & callbacks.keys():
                callbacks[fd]()
            if time.monotonic() >= deadline:
                try:
                    _print_stats(go_json, container.stats(states, container_id), container_id)
                except NotRunningError:
                    return 0
                deadline = time.monotonic() + interval
    except KeyboardInterrupt:
        return 0


def _print_stats(go_json: Callable[[object], str], sample: dict[str, Any], container_id: str) -> None:
    print(go_json({"type": "stats", "id": container_id, "data": sample["cgroup_stats"]}), flush=True)
