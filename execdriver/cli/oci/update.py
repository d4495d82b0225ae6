"""``update``: change the resource limits of a running container."""

from __future__ import annotations

import sys

from execdriver.cli.flags import Flag, UsageError
from execdriver.cli.oci.common import one_id, store

SYNOPSIS = "execdriver update [--resources FILE|-] [limit flags] ID"
DESCRIPTION = "Update a container's limits; zero (or absent) leaves a limit unchanged."
_NUMBERS = {  # flag -> (Limits field, OCI resources path)
    "memory": ("memory", ("memory", "limit")),
    "memory_reservation": ("memory_reservation", ("memory", "reservation")),
    "memory_swap": ("memory_swap", ("memory", "swap")),
    "cpu_shares": ("cpu_shares", ("cpu", "shares")),
    "cpu_quota": ("cpu_quota", ("cpu", "quota")),
    "cpu_period": ("cpu_period", ("cpu", "period")),
    "pids_limit": ("pids_limit", ("pids", "limit")),
    "blkio_weight": ("blkio_weight", ("blockIO", "weight")),
}
FLAGS = (
    Flag("--resources", "-r", default="", metavar="FILE", help="LinuxResources JSON, - for stdin"),
    *(Flag("--" + name.replace("_", "-"), default="", metavar="N", help=f"new {name.replace('_', ' ')}")
      for name in _NUMBERS),
    Flag("--cpuset-cpus", default="", metavar="LIST", help="new cpuset cpus"),
    Flag("--cpuset-mems", default="", metavar="LIST", help="new cpuset mems"),
    Flag("--help", "-h", kind="bool", help="show this help"),
)


def _from_resources(text: str) -> dict[str, object]:
    from execdriver.errors import ConfigError
    from execdriver.gojson import loads
    from execdriver.oci import config

    try:
        resources = loads(text)
    except ValueError as err:
        raise ConfigError(f"--resources: not valid JSON: {err}") from None
    if not isinstance(resources, dict):
        raise ConfigError("--resources: expected an object (LinuxResources)")
    return config.resource_limits(resources)


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    from execdriver.native import container

    container_id = one_id(args, "update")
    limits: dict[str, object] = {}
    if options["resources"]:
        source = str(options["resources"])
        try:
            text = sys.stdin.read() if source == "-" else open(source, encoding="utf-8").read()  # noqa: SIM115
        except UnicodeDecodeError as err:
            from execdriver.errors import ConfigError

            raise ConfigError(f"--resources: not valid JSON: {err}") from None
        limits.update(_from_resources(text))
    for name, (field, _) in _NUMBERS.items():
        value = str(options[name])
        if value:
            try:
                number = int(value)
            except ValueError:
                raise UsageError(f"update: --{name.replace('_', '-')} {value}: not a number") from None
            if number:
                limits[field] = number
    for name in ("cpuset_cpus", "cpuset_mems"):
        if options[name]:
            limits[name] = str(options[name])
    from execdriver.linux.cgroups import Limits

    container.update(store(global_options), container_id, Limits(**limits))
    return 0
