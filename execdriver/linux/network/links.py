"""Bridges and veth pairs, through netlink (pyroute2).

Imported only when a container has a bridged interface: pyroute2 costs
about 100 ms to import, which a container without networking never pays.
The container's end of a veth pair is created inside its network namespace
already (named eth0), and configured through a netlink socket opened there:
a socket stays in the namespace it was created in, so the thread enters the
namespace just long enough to create it (setns is per thread).
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import os
import socket
import struct
import threading
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_ERROR
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from execdriver.linux import syscalls


class LinkError(OSError):
    """A netlink operation failed; the message says on which interface."""


def _fail(what: str, err: NetlinkError) -> LinkError:
    return LinkError(err.code, f"{what}: {os.strerror(err.code)}")


def routed() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the host routes or has an address in, the default route aside."""
    with IPRoute() as ipr:
        networks = []
        for route in ipr.get_routes(family=socket.AF_INET):
            length = route["dst_len"]
            if length:
                networks.append(ipaddress.IPv4Network(f"{route.get_attr('RTA_DST')}/{length}", strict=False))
        for address in ipr.get_addr(family=socket.AF_INET):
            networks.append(ipaddress.IPv4Network(
                f"{address.get_attr('IFA_ADDRESS')}/{address['prefixlen']}", strict=False))
        return networks


def bridge_address(name: str) -> tuple[bool, ipaddress.IPv4Interface | None]:
    """(whether ``name`` exists as a bridge, its first IPv4 address); LinkError if it is no bridge."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return False, None
        link = ipr.get_links(found[0])[0]
        info = link.get_attr("IFLA_LINKINFO")
        if info is None or info.get_attr("IFLA_INFO_KIND") != "bridge":
            raise LinkError(errno.EEXIST, f"network.interface.bridge: {name} exists and is not a bridge")
        for address in ipr.get_addr(family=socket.AF_INET, index=found[0]):
            return True, ipaddress.IPv4Interface(f"{address.get_attr('IFA_ADDRESS')}/{address['prefixlen']}")
        return True, None


def create_bridge(name: str, gateway: ipaddress.IPv4Interface, mac: str) -> None:
    """A bridge with the gateway's address, up.

    Its MAC is set, not left to the kernel, which would otherwise give it the
    lowest of its ports' and change it as containers come and go, behind
    their ARP caches.
    """
    with IPRoute() as ipr:
        try:
            ipr.link("add", ifname=name, kind="bridge", address=mac)
        except NetlinkError as err:
            raise _fail(f"cannot create bridge {name}", err) from None
        try:
            index = ipr.link_lookup(ifname=name)[0]
            ipr.addr("add", index=index, address=str(gateway.ip), prefixlen=gateway.network.prefixlen)
            ipr.link("set", index=index, state="up")
        except NetlinkError as err:
            ipr.link("del", ifname=name)
            raise _fail(f"cannot set up bridge {name}", err) from None


def connect(pid: int, bridge: str, veth: str, address: ipaddress.IPv4Interface, gateway: str, mac: str,
            mtu: int) -> None:
    """A veth pair from ``bridge`` to eth0 in the network namespace of ``pid``, addressed and routed."""
    try:
        master = int(_read(f"/sys/class/net/{bridge}/ifindex"))
        mtu = mtu or int(_read(f"/sys/class/net/{bridge}/mtu"))
    except OSError:
        raise LinkError(errno.ENODEV, f"bridge {bridge} is gone") from None
    try:  # one request: the pair, its peer in the container, on the bridge, up
        _host().link("add", ifname=veth, kind="veth", mtu=mtu, master=master, state="up",
                     peer={"ifname": "eth0", "net_ns_pid": pid, "address": mac, "mtu": mtu})
    except NetlinkError as err:
        raise _fail(f"cannot connect the container to {bridge}", err) from None
    _configure_inside(pid, address, gateway)


def _configure_inside(pid: int, address: ipaddress.IPv4Interface, gateway: str) -> None:
    """eth0's address, up, and the default route, through a netlink socket opened in the namespace.

    pyroute2's messages over a plain socket: an IPRoute per container would
    cost an event loop each, and leaves some 1.7 KB behind per instance.
    """
    sock, index = _socket_in(pid, "eth0")
    try:
        message = ifaddrmsg()
        message["family"], message["prefixlen"], message["index"] = socket.AF_INET, address.network.prefixlen, index
        message["attrs"] = [("IFA_LOCAL", str(address.ip)), ("IFA_ADDRESS", str(address.ip))]
        _request(sock, message, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, "eth0's address")
        message = ifinfmsg()
        message["index"], message["flags"], message["change"] = index, 1, 1  # IFF_UP
        _request(sock, message, RTM_NEWLINK, 0, "eth0 up")
        message = rtmsg()
        message["family"], message["table"], message["proto"], message["type"] = socket.AF_INET, 254, 4, 1
        message["attrs"] = [("RTA_GATEWAY", gateway)]
        _request(sock, message, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, "the default route")
    finally:
        sock.close()


_sequence = itertools.count(1)


def _request(sock: socket.socket, message: Any, kind: int, flags: int, what: str) -> None:
    message["header"]["type"] = kind
    message["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | flags
    message["header"]["sequence_number"] = next(_sequence)
    message.encode()
    sock.send(message.data)
    reply = sock.recv(65536)
    _, kind_back = struct.unpack_from("=IH", reply, 0)
    code = struct.unpack_from("=i", reply, 16)[0] if kind_back == NLMSG_ERROR else 0
    if code:
        raise LinkError(-code, f"cannot set {what} in the container: {os.strerror(-code)}")


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip()


_local = threading.local()


def _host() -> IPRoute:
    """This thread's netlink socket in the host's namespace, kept: each costs an event loop to make."""
    ipr: IPRoute | None = getattr(_local, "ipr", None)
    if ipr is None:
        ipr = _local.ipr = IPRoute()
    return ipr


def is_bridge(name: str) -> bool:
    return os.path.isdir(f"/sys/class/net/{name}/bridge")


def _socket_in(pid: int, name: str) -> tuple[socket.socket, int]:
    """A netlink socket in the network namespace of ``pid``, and the index of ``name`` there."""
    def there() -> tuple[socket.socket, int]:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        sock.bind((0, 0))
        return sock, socket.if_nametoindex(name)

    return syscalls.in_namespace_of(pid, "net", syscalls.CLONE_NEWNET, there)


def delete(name: str) -> None:
    """Delete the link ``name`` if it exists (a veth takes its peer with it)."""
    try:
        _host().link("del", ifname=name)
    except NetlinkError as err:
        if err.code not in (errno.ENODEV, errno.ENOENT):
            raise _fail(f"cannot delete {name}", err) from None


def ports_of(bridge: str) -> list[str]:
    """The interfaces attached to ``bridge``."""
    try:
        return os.listdir(f"/sys/class/net/{bridge}/brif")
    except FileNotFoundError:
        return []


def set_sysctl(key: str, value: str) -> None:
    with open("/proc/sys/net/" + key, "w", encoding="utf-8") as handle:
        handle.write(value)
