"""Subnets for bridges and addresses for containers: a persistent, locked allocator.

Bridges, subnets and nftables rules are the host's, not one driver's, so
the allocator is the host's too: one JSON file under one flock, whatever
state directory a driver uses. /run is a tmpfs: the leases go with the
containers at a reboot.

    {"bridges": {name: {"subnet": "10.98.0.0/24", "gateway": "10.98.0.1", "created": true}},
     "leases": {token: {"id", "root", "bridge", "ip", "mac", "veth", "ports", "files",
                        "holder": [pid, start time], "init": [pid, start time] or null}}}

A lease is stale once both its holder (the process that runs the
container) and the container's init are gone: the next allocation, or the
fork server of a killed program, releases it.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os

from execdriver.errors import ConfigError
from execdriver.linux import process
from execdriver.linux.network import STATE_DIR

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

DEFAULT_POOL = ("10.98.0.0/16", 24)


class Store:
    """The allocator's file, read and locked on enter, written back on exit."""

    def __init__(self, directory: str = STATE_DIR) -> None:
        self.directory = directory
        self.fd = -1
        self.bridges: dict[str, dict[str, Any]] = {}
        self.leases: dict[str, dict[str, Any]] = {}

    def __enter__(self) -> Store:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self.fd = os.open(os.path.join(self.directory, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            with open(os.path.join(self.directory, "state.json"), encoding="utf-8") as handle:
                data = json.load(handle)
            self.bridges, self.leases = data["bridges"], data["leases"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            self.bridges, self.leases = {}, {}
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            path = os.path.join(self.directory, "state.json")
            if not self.bridges and not self.leases:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            else:
                temporary = f"{path}.{os.getpid()}"
                with open(temporary, "w", encoding="utf-8") as handle:
                    json.dump({"bridges": self.bridges, "leases": self.leases}, handle)
                os.replace(temporary, path)
        finally:
            os.close(self.fd)

    def stale(self) -> list[str]:
        """Tokens of the leases whose holder and init are both gone."""
        return [token for token, lease in self.leases.items()
                if not alive(lease.get("holder")) and not alive(lease.get("init"))]

    def find(self, root: str, container_id: str) -> str | None:
        """The token of the lease of container ``container_id`` of the state directory ``root``."""
        for token, lease in self.leases.items():
            if lease["id"] == container_id and lease["root"] == root:
                return token
        return None


def alive(owner: list[int] | None) -> bool:
    """Whether ``[pid, start time]`` is still that process, and not a zombie (an init not reaped yet)."""
    return owner is not None and process.is_alive(owner[0], owner[1])


def veth(token: str) -> str:
    """The host end of a container's veth pair: "ve" and 12 hex digits of its lease."""
    return f"ve{token[:12]}"


def is_veth(name: str) -> bool:
    """Whether ``name`` has the form of our veths' names (a bridge with only these is unused)."""
    return len(name) == 14 and name.startswith("ve") and all(c in "0123456789abcdef" for c in name[2:])


def me() -> list[int]:
    pid = os.getpid()
    return [pid, process.start_time(pid) or 0]


def pool(spec: tuple[str, int] | list[Any] | None) -> tuple[ipaddress.IPv4Network, int]:
    """The subnet pool (a network and the prefix length of each bridge's subnet), checked."""
    network, prefix = spec or DEFAULT_POOL
    try:
        parsed = ipaddress.IPv4Network(network)
    except ValueError:
        raise ConfigError(f"subnet_pool: {network!r} is not an IPv4 network") from None
    if not parsed.prefixlen <= prefix <= 30:
        raise ConfigError(f"subnet_pool: subnets of /{prefix} do not fit in {parsed} (/{parsed.prefixlen} to /30)")
    return parsed, prefix


def choose_subnet(candidates: ipaddress.IPv4Network, prefix: int,
                  in_use: Iterable[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """The first subnet of the pool that overlaps nothing the host routes or we handed out."""
    used = list(in_use)
    for subnet in candidates.subnets(new_prefix=prefix):
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise ConfigError(f"subnet_pool: every /{prefix} of {candidates} is routed on this host already")


def allocate(subnet: ipaddress.IPv4Network, gateway: str, taken: Iterable[str], wanted: str = "") -> str:
    """``wanted`` if it is free and in ``subnet``, else the lowest free address."""
    busy = {gateway, *taken}
    if wanted:
        address = ipaddress.IPv4Address(wanted)
        if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
            raise ConfigError(f"network.interface.ip: {wanted} is not a host address of the bridge's subnet {subnet}")
        if wanted in busy:
            raise ConfigError(f"network.interface.ip: {wanted} is in use on this bridge")
        return wanted
    for address in subnet.hosts():
        if str(address) not in busy:
            return str(address)
    raise ConfigError(f"network: no free address left in {subnet}")


def mac_of(address: str) -> str:
    """Docker's derived MAC: 02:42 and the four bytes of the IPv4 address."""
    return "02:42:" + ":".join(f"{byte:02x}" for byte in ipaddress.IPv4Address(address).packed)
