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
import os
import socket
import threading

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

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
    inside = _socket_in(pid)
    try:
        index = inside.link_lookup(ifname="eth0")[0]
        inside.addr("add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen)
        inside.link("set", index=index, state="up")
        inside.route("add", dst="0.0.0.0/0", gateway=gateway)
    except NetlinkError as err:
        raise _fail("cannot configure eth0 in the container", err) from None
    finally:
        inside.close()


def _read(path: str) -> str:
    with open(path, encoding="ascii") as handle:
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


def _socket_in(pid: int) -> IPRoute:
    """A netlink socket in the network namespace of ``pid`` (see the module's docstring)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            syscalls.setns(target, syscalls.CLONE_NEWNET)
        finally:
            os.close(target)
        try:
            ipr = IPRoute()
            ipr.link_lookup(ifname="lo")  # the socket exists from here on
        finally:
            syscalls.setns(own, syscalls.CLONE_NEWNET)
    finally:
        os.close(own)
    return ipr


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
    with open("/proc/sys/net/" + key, "w", encoding="ascii") as handle:
        handle.write(value)
