"""A container's network settings, checked before anything is created.

The result is a :class:`Network`: mode ``bridge`` (bridge, ip, mac, mtu,
ports as [protocol, host_ip, host_port, container_port]), ``host``, or
``container`` (the container whose namespace it joins); no network at all
(loopback alone) is None. A host port of 0 is allocated when the container
starts.
"""

from __future__ import annotations

import ipaddress
import re

from execdriver.errors import ConfigError
from execdriver.linux.network import Network

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_BRIDGE = "execdriver0"
PROTOCOLS = ("tcp", "udp")
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")  # (fullmatch: $ would take a final newline)
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")


def _port(text: str, where: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise ConfigError(f"{where}: {text!r} is not a port number (1-65535)")
    return int(text)


def _ipv4(text: str, where: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not an IPv4 address") from None


def ports(port_map: dict[str, list[dict[str, str]] | None] | None) -> list[list[Any]]:
    """Docker's nat.PortMap (``{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}``) as bindings."""
    result: list[list[Any]] = []
    for key, bindings in (port_map or {}).items():
        where = f"network.interface.port_bindings[{key!r}]"
        number, _, protocol = key.partition("/")
        protocol = protocol or "tcp"
        if protocol not in PROTOCOLS:
            raise ConfigError(f"{where}: protocol {protocol!r} is not supported (tcp or udp)")
        container_port = _port(number, where)
        for index, binding in enumerate(bindings or ()):
            here = f"{where}[{index}]"
            host_ip = binding.get("HostIp", "")
            host_ip = _ipv4(host_ip, f"{here}.HostIp") if host_ip not in ("", "0.0.0.0") else ""
            host_port = binding.get("HostPort", "")
            result.append([protocol, host_ip, _port(host_port, f"{here}.HostPort") if host_port else 0,
                           container_port])
    seen: set[tuple[str, int]] = set()
    for protocol, _, host_port, _ in result:
        if host_port and (protocol, host_port) in seen:
            raise ConfigError(f"network.interface.port_bindings: host port {host_port}/{protocol} given twice")
        seen.add((protocol, host_port))
    return result


def parse(*, host: bool = False, container_id: str = "", bridge: str | None = None, ip: str = "",
          mac: str = "", mtu: int = 0, port_map: dict[str, list[dict[str, str]] | None] | None = None,
          ) -> Network | None:
    """A container's network; ``bridge`` None means no bridged interface (None: loopback alone)."""
    chosen = [name for name, wanted in (("host_networking", host), ("container_id", bool(container_id)),
                                        ("interface", bridge is not None)) if wanted]
    if len(chosen) > 1:
        raise ConfigError(f"network: {' and '.join(chosen)} exclude each other; choose one")
    if mtu and not 68 <= mtu <= 65535:
        raise ConfigError(f"network.mtu: {mtu} is not between 68 and 65535")
    if host:
        return Network("host")
    if container_id:
        return Network("container", container=container_id)
    if bridge is None:
        return None
    bridge = bridge or DEFAULT_BRIDGE
    if not _IFNAME.fullmatch(bridge) or bridge in (".", ".."):
        raise ConfigError(f"network.interface.bridge: {bridge!r} is not an interface name (1-15 of A-Z a-z 0-9 _ . -)")
    if ip:
        ip = _ipv4(ip, "network.interface.ip")
    if mac:
        if not _MAC.fullmatch(mac):
            raise ConfigError(f"network.interface.mac: {mac!r} is not a MAC address (like 02:42:ac:11:00:02)")
        if int(mac[:2], 16) & 1:
            raise ConfigError(f"network.interface.mac: {mac} is a multicast address")
        mac = mac.lower()
    return Network("bridge", bridge=bridge, ip=ip, mac=mac, mtu=mtu, ports=ports(port_map))
