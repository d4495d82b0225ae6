"""``events``: a container's statistics (and OOM events), as runc prints them."""

from __future__ import annotations

import gc
import time

from execdriver.cli.flags import Flag, UsageError
from execdriver.cli.oci.common import one_id, store

SYNOPSIS = "execdriver events [--stats] [--interval DURATION] ID"
DESCRIPTION = "Print the container's stats once (--stats), or every interval until it stops."
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
    from execdriver.errors import NotRunningError
    from execdriver.gojson import go_json
    from execdriver.native import container

    container_id = one_id(args, "events")
    gc.enable()  # a stream that may run for days (bin/execdriver turned the collector off)
    interval = _seconds(str(options["interval"]))
    states = store(global_options)
    try:
        while True:
            sample = container.stats(states, container_id)
            print(go_json({"type": "stats", "id": container_id, "data": sample["cgroup_stats"]}), flush=True)
            if options["stats"]:
                return 0
            time.sleep(interval)
    except NotRunningError:
        if options["stats"]:
            raise
        return 0  # the container stopped: the stream ends
    except KeyboardInterrupt:
        return 0
