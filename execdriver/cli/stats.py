"""``execdriver stats ID``: a container's resource use, as a table or JSON.

The CPU column is the share of the host's CPU time the container used
between two samples, scaled by the CPU count, as ``docker stats`` shows it.
"""

from __future__ import annotations

import sys
import time

from execdriver.cli.flags import Flag, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SYNOPSIS = "execdriver stats [flags] ID"
DESCRIPTION = "Show the resource use of a running container."
FLAGS = (
    Flag("--json", kind="bool", help="one JSON object per sample (libcontainer's Stats names)"),
    Flag("--watch", kind="bool", help="sample again every interval until interrupted"),
    Flag("--interval", default="1", metavar="SECONDS", help="time between samples (default 1)"),
    Flag("--help", "-h", kind="bool", help="show this help"),
)
_HEADER = ("CONTAINER", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS")


def _size(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.1f}{unit}" if unit != "B" else f"{int(value)}B"
        value /= 1024
    return f"{value}"


def _cpu_percent(before: dict[str, Any], after: dict[str, Any]) -> float:
    usage = after["cgroup_stats"]["cpu_stats"]["cpu_usage"]
    cpu_delta = usage["total_usage"] - before["cgroup_stats"]["cpu_stats"]["cpu_usage"]["total_usage"]
    system_delta = after["system_usage"] - before["system_usage"]
    cpus = len(usage["percpu_usage"]) or 1
    return 100.0 * cpu_delta / system_delta * cpus if system_delta > 0 and cpu_delta > 0 else 0.0


def _row(container_id: str, before: dict[str, Any], after: dict[str, Any]) -> tuple[str, ...]:
    cgroup = after["cgroup_stats"]
    memory = cgroup["memory_stats"]["usage"]["usage"] - cgroup["memory_stats"]["stats"].get("total_inactive_file", 0)
    limit = after["memory_limit"]
    rx = sum(i["rx_bytes"] for i in after["interfaces"])
    tx = sum(i["tx_bytes"] for i in after["interfaces"])
    entries = cgroup["blkio_stats"]["io_service_bytes_recursive"]
    read = sum(e["value"] for e in entries if e["op"] == "Read")
    written = sum(e["value"] for e in entries if e["op"] == "Write")
    return (
        container_id,
        f"{_cpu_percent(before, after):.2f}%",
        f"{_size(memory)} / {_size(limit) if limit else 'unlimited'}",
        f"{100.0 * memory / limit:.2f}%" if limit else "--",
        f"{_size(rx)} / {_size(tx)}",
        f"{_size(read)} / {_size(written)}",
        str(cgroup["pids_stats"]["current"]),
    )


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def _json(sample: dict[str, Any]) -> str:
    """ResourceStats.to_json's text, without the dataclasses of the API."""
    from execdriver.gojson import go_json, rfc3339nano_now

    return go_json({"cgroup_stats": sample["cgroup_stats"], "interfaces": sample["interfaces"],
                    "read": rfc3339nano_now(), "memory_limit": sample["memory_limit"],
                    "system_usage": sample["system_usage"]})


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    from execdriver.native import container
    from execdriver.native.state import StateStore

    if len(args) != 1:
        raise UsageError("stats: give exactly one container id")
    try:
        interval = float(str(options["interval"]))
    except ValueError:
        interval = -1
    if not interval >= 0:  # (nan too)
        raise UsageError(f"stats: --interval {options['interval']}: not a number of seconds")
    container_id = args[0]
    store = StateStore(str(global_options["root"]))
    before = container.stats(store, container_id)
    try:
        while True:
            if not options["json"]:  # the CPU column needs a second sample
                time.sleep(min(interval, 0.2) if not options["watch"] else interval)
            after = container.stats(store, container_id)
            if options["json"]:
                print(_json(after), flush=True)
            else:
                if options["watch"]:
                    print("\033[H\033[2J", end="")  # a fresh screen, as docker stats does
                print(_table([_HEADER, _row(container_id, before, after)]), flush=True)
            if not options["watch"]:
                return 0
            if options["json"]:
                time.sleep(interval)
            before = after
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away: not an error of ours
        return 0
