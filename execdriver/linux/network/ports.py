"""Published ports: host ports held, and nftables DNAT in a table of our own.

The rules never change: the ``ip execdriver`` table holds two maps from a
host port (and, for a binding to one host address, that address) to a
container's address and port, and each container adds and removes its own
map elements. So a container's rules go exactly when it does, by key, and
two containers can never publish one port: nftables refuses the second
element.

Traffic to a host address from elsewhere is rewritten in prerouting; the
host's own traffic (to 127.0.0.1 or any local address) in output. For
127.0.0.1 the bridge has ``route_localnet`` on, so a packet from the
loopback address may leave through it, and postrouting masquerades it with
the bridge's address. This is Docker's way without its userland proxy: no
process per port, and the container sees a real source address for every
client but the host's loopback ones. Containers reach the outside through
masquerade.

``route_localnet`` would also let a container reach the host's loopback
services (a packet to 127.0.0.1 crafted with NET_RAW, which Docker's
default capabilities grant, and sent to the bridge: CVE-2020-8558 in
kube-proxy). The ``guard`` chain drops, before routing, everything that
arrives from one of our bridges to or from 127.0.0.0/8.

Each host port is also bound (not listened on) by the process that runs
the container, for as long as it runs: a port that something else holds
is refused before the container starts, an empty HostPort gets a free port
from the kernel, and no program can take the port while it is published.
"""

from __future__ import annotations

import errno
import socket

from execdriver.linux import netfilter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TABLE = "ip execdriver"
_DNAT = ("fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @by_address",
         "fib daddr type local dnat ip to meta l4proto . th dport map @by_port")
_RULESET = f"""
table {TABLE} {{
  map by_address {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}
  map by_port {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
  set bridges {{ type ifname; }}
  set subnets {{ type ipv4_addr; flags interval; }}
  chain guard {{
    type filter hook prerouting priority raw; policy accept
    iifname @bridges ip daddr 127.0.0.0/8 drop
    iifname @bridges ip saddr 127.0.0.0/8 drop
  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept
    {_DNAT[0]}
    {_DNAT[1]}
  }}
  chain output {{
    type nat hook output priority -100; policy accept
    {_DNAT[0]}
    {_DNAT[1]}
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept
    ip saddr 127.0.0.0/8 oifname @bridges masquerade
    ct status dnat ip saddr @subnets oifname @bridges masquerade
    ip saddr @subnets oifname != @bridges masquerade
  }}
}}
"""


class PortInUseError(OSError):
    pass


def reserve(bindings: list[list[Any]]) -> tuple[list[list[Any]], list[socket.socket]]:
    """Bind every host port; the bindings with their host ports, and the sockets that hold them."""
    held: list[socket.socket] = []
    result = []
    try:
        for protocol, host_ip, host_port, container_port in bindings:
            kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
            holder = socket.socket(socket.AF_INET, kind)
            held.append(holder)
            try:
                holder.bind((host_ip, host_port))
            except OSError as err:
                where = f"{host_ip or '0.0.0.0'}:{host_port}/{protocol}"
                if err.errno == errno.EADDRINUSE:
                    raise PortInUseError(err.errno, f"host port {where} is already in use") from None
                if err.errno == errno.EADDRNOTAVAIL:
                    raise PortInUseError(err.errno, f"host address {host_ip} is not an address of this host") from None
                raise PortInUseError(err.errno, f"cannot bind host port {where}: {err.strerror}") from None
            result.append([protocol, host_ip, holder.getsockname()[1], container_port])
    except BaseException:
        for holder in held:
            holder.close()
        raise
    return result, held


def _elements(address: str, bindings: list[list[Any]]) -> list[str]:
    elements = []
    for protocol, host_ip, host_port, container_port in bindings:
        if host_ip:
            elements.append(f"by_address {{ {host_ip} . {protocol} . {host_port} : {address} . {container_port} }}")
        else:
            elements.append(f"by_port {{ {protocol} . {host_port} : {address} . {container_port} }}")
    return elements


def ensure_table() -> None:
    try:
        netfilter.run(f"list table {TABLE}")
    except netfilter.NetfilterError:
        netfilter.run(_RULESET)


def publish(address: str, bindings: list[list[Any]]) -> None:
    """DNAT each binding's host port to ``address``, all or none."""
    commands = [f"add element {TABLE} {element}" for element in _elements(address, bindings)]
    if commands:
        try:
            netfilter.run("\n".join(commands))
        except netfilter.NetfilterError as err:
            if "File exists" in str(err):
                raise PortInUseError(errno.EADDRINUSE, "a host port is published by another container") from None
            raise


def unpublish(address: str, bindings: list[list[Any]]) -> None:
    """Remove the bindings' elements, each on its own: one already gone must not keep the rest."""
    for element in _elements(address, bindings):
        name, _, rest = element.partition(" ")
        key = rest.split(" : ")[0] + " }"
        try:
            netfilter.run(f"delete element {TABLE} {name} {key}")
        except netfilter.NetfilterError:
            pass


def add_bridge(bridge: str, subnet: str) -> None:
    netfilter.run(f'add element {TABLE} bridges {{ "{bridge}" }}\nadd element {TABLE} subnets {{ {subnet} }}')


def remove_bridge(bridge: str, subnet: str) -> None:
    for command in (f'delete element {TABLE} bridges {{ "{bridge}" }}',
                    f"delete element {TABLE} subnets {{ {subnet} }}"):
        try:
            netfilter.run(command)
        except netfilter.NetfilterError:
            pass


def drop_table() -> None:
    try:
        netfilter.run(f"delete table {TABLE}")
    except netfilter.NetfilterError:
        pass
