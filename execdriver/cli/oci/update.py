"""``update``: change the resource limits of a running container, as ``runc update``."""

from __future__ import annotations

import sys

from execdriver.cli.flags import Flag, go_int, go_int_flag, ram_in_bytes
from execdriver.cli.oci.common import one_id, store

SYNOPSIS = "execdriver update [--resources FILE|-] [limit flags] ID"
DESCRIPTION = ("Update a container's limits. A flag left out (or 0) leaves its limit as it is; -1 lifts "
               "memory, memory-swap, memory-reservation, pids-limit and cpu-quota; memory sizes take units "
               "(50M, 1.5G). With --resources the other flags are ignored, as runc's are.")
REORDER_ARGS = True  # flags may follow the id, as runc's urfave/cli takes them

# flag -> (Limits field, how runc reads its value: a size, Go's uint64 or int64, an IntFlag)
_VALUES = {
    "memory": ("memory", "size"),
    "memory_reservation": ("memory_reservation", "size"),
    "memory_swap": ("memory_swap", "size"),
    "kernel_memory": ("", "size"),
    "kernel_memory_tcp": ("", "size"),
    "cpu_period": ("cpu_period", "uint"),
    "cpu_rt_period": ("cpu_rt_period", "uint"),
    "cpu_share": ("cpu_shares", "uint"),
    "cpu_quota": ("cpu_quota", "int"),
    "cpu_rt_runtime": ("cpu_rt_runtime", "int"),
    "pids_limit": ("pids_limit", "flag"),
    "blkio_weight": ("blkio_weight", "flag"),
}
FLAGS = (
    Flag("--resources", "-r", default="", metavar="FILE", help="LinuxResources JSON, - for stdin"),
    Flag("--memory", default="", metavar="SIZE", help="memory limit (50M, 1G...; -1: unlimited)"),
    Flag("--memory-reservation", default="", metavar="SIZE", help="memory soft limit"),
    Flag("--memory-swap", default="", metavar="SIZE", help="memory + swap limit (-1: unlimited swap)"),
    Flag("--kernel-memory", default="", metavar="SIZE", help="(obsolete; ignored, as runc's)"),
    Flag("--kernel-memory-tcp", default="", metavar="SIZE", help="(obsolete; ignored, as runc's)"),
    Flag("--cpu-period", default="", metavar="US", help="CPU CFS period"),
    Flag("--cpu-quota", default="", metavar="US", help="CPU CFS quota in a period (-1: unlimited)"),
    Flag("--cpu-share", "--cpu-shares", default="", metavar="N", help="CPU shares (relative weight)"),
    Flag("--cpu-rt-period", default="", metavar="US", help="CPU real-time period (cgroup v1)"),
    Flag("--cpu-rt-runtime", default="", metavar="US", help="CPU real-time runtime in a period (cgroup v1)"),
    Flag("--cpuset-cpus", default="", metavar="LIST", help="CPUs to use (0-2,4)"),
    Flag("--cpuset-mems", default="", metavar="LIST", help="memory nodes to use"),
    Flag("--pids-limit", default="", metavar="N", help="maximum number of processes (-1: unlimited)"),
    Flag("--blkio-weight", default="", metavar="N", help="block I/O weight, 10 to 1000"),
    Flag("--l3-cache-schema", default="", metavar="SCHEMA", help="Intel RDT L3 cache schema (not supported)"),
    Flag("--mem-bw-schema", default="", metavar="SCHEMA", help="Intel RDT memory bandwidth schema (not supported)"),
    Flag("--help", "-h", kind="bool", help="show this help"),
)


def _from_resources(source: str) -> dict[str, object]:
    from execdriver.errors import ConfigError
    from execdriver.gojson import loads
    from execdriver.oci import config

    try:
        text = sys.stdin.read() if source == "-" else open(source, encoding="utf-8").read()  # noqa: SIM115
        resources = loads(text)
    except (UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"--resources: not valid JSON: {err}") from None
    if not isinstance(resources, dict):
        raise ConfigError("--resources: expected an object (LinuxResources)")
    return config.resource_limits(resources)


def _from_flags(options: dict[str, object]) -> dict[str, object]:
    """The limits the flags give, each value read as runc reads it (errors in its words, exit 1)."""
    from execdriver.errors import ConfigError

    limits: dict[str, object] = {}
    for name, (field, kind) in _VALUES.items():
        text = str(options[name])
        if not text:
            continue
        flag = name.replace("_", "-")
        try:
            number = (-1 if kind == "size" and text == "-1" else ram_in_bytes(text) if kind == "size" else
                      go_int_flag(text, flag) if kind == "flag" else go_int(text, unsigned=kind == "uint"))
        except ValueError as err:
            raise ConfigError(str(err) if kind == "flag" else f"invalid value for {flag}: {err}") from None
        if not field:
            if number:
                from execdriver import log

                log.warn("Kernel memory settings are ignored and will be removed")
            continue
        if kind == "flag" and name == "blkio_weight":
            number &= 0xFFFF  # runc's uint16()
        if number:
            limits[field] = number
    for name in ("cpuset_cpus", "cpuset_mems"):
        if options[name]:
            limits[name] = str(options[name])
    for name, what in (("l3_cache_schema", "Intel RDT/CAT: l3 cache schema"),
                       ("mem_bw_schema", "Intel RDT/MBA: memory bandwidth schema")):
        if options[name]:
            raise ConfigError(f"{what}: not supported by this runtime")
    return limits


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    from execdriver.linux.cgroups import Limits
    from execdriver.native import container

    container_id = one_id(args, "update")
    resources = str(options["resources"])
    limits = _from_resources(resources) if resources else _from_flags(options)
    container.update(store(global_options), container_id, Limits(**limits))
    return 0
