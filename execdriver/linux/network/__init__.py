"""Container networking: loopback alone, the host's, another container's, or a bridge.

Only a bridged interface has anything to set up on the host, in three steps
that container.py runs around the clone:

    reserve   under the allocator's lock (ipam.py): release stale leases;
              the bridge, created if missing with a subnet from the pool;
              an address; the host ports bound and published (ports.py);
              /etc/hosts, hostname and resolv.conf written (etc.py)
    attach    the init exists: a veth pair from the bridge to eth0 in its
              network namespace, addressed and routed (links.py)
    release   the ports' rules, the veth, the files and the lease; the
              bridge if we created it and nothing else uses it; our
              nftables table once no lease is left

The other modes are clone flags: "host" keeps the host's network namespace,
"container" joins another container's (spec.py, init.py).
"""

from __future__ import annotations

import os

from execdriver.errors import ConfigError, NetworkError
from execdriver.linux import NETWORK_STATE_DIR, any_network_lease

# The host's allocator (ipam.py), whatever a driver's state directory: its
# file's absence tells, without importing ipam, that no container has a lease.
STATE_DIR = NETWORK_STATE_DIR

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Any

    from execdriver.linux.network.ipam import Store

    # A published port: [protocol, host address ("" for any), host port (0: any free), container port]
    Binding = list[str | int]
    NetworkWire = tuple[str, str, str, str, int, list[Binding], str, tuple[int, int] | None, str,
                        tuple[str, int] | None, str]

    from execdriver.linux.filesystem import Mount


class Network:
    """A container's network: what the front end asked, and what the runtime adds before the clone.

    The runtime adds: for ``container``, the joined init (``target``: pid,
    start time) and its /etc files' directory (``files``); for ``bridge``,
    the subnet ``pool`` and, once reserved, the lease's ``token`` (which the
    fork server releases if the program that ran the container dies).
    """

    __slots__ = ("bridge", "container", "files", "ip", "mac", "mode", "mtu", "pool", "ports", "target", "token")

    def __init__(self, mode: str, *, bridge: str = "", ip: str = "", mac: str = "", mtu: int = 0,
                 ports: list[Binding] | None = None, container: str = "", target: tuple[int, int] | None = None,
                 files: str = "", pool: tuple[str, int] | None = None, token: str = "") -> None:
        self.mode = mode
        self.bridge = bridge
        self.ip = ip
        self.mac = mac
        self.mtu = mtu
        self.ports = ports or []
        self.container = container
        self.target = target
        self.files = files
        self.pool = pool
        self.token = token

    def wire(self) -> NetworkWire:
        return (self.mode, self.bridge, self.ip, self.mac, self.mtu, self.ports, self.container, self.target,
                self.files, self.pool, self.token)

    @classmethod
    def from_wire(cls, wire: NetworkWire) -> Network:
        mode, bridge, ip, mac, mtu, ports, container, target, files, pool, token = wire
        return cls(mode, bridge=bridge, ip=ip, mac=mac, mtu=mtu, ports=ports, container=container, target=target,
                   files=files, pool=pool, token=token)

    @property
    def unshares(self) -> bool:
        """Whether the container gets a network namespace of its own (host and container modes share one)."""
        return self.mode not in ("host", "container")


class Attachment:
    """One container's lease: its address, its held host ports, its files."""

    def __init__(self, token: str, lease: dict[str, Any], gateway: str, prefix: int,
                 held: list[socket.socket]) -> None:
        self.token = token
        self.lease = lease
        self.gateway = gateway
        self.prefix = prefix
        self.held = held

    @property
    def address(self) -> str:
        return str(self.lease["ip"])

    def mounts(self) -> list[Mount]:
        from execdriver.linux.network import etc

        return etc.mounts(self.lease["files"])

    def attach(self, pid: int, mtu: int = 0) -> None:
        """Connect the init ``pid`` (its network namespace) to the bridge."""
        import ipaddress

        from execdriver.linux import process
        from execdriver.linux.network import ipam, links

        with ipam.Store() as store:  # recorded first: release deletes the veth from here on
            if self.token in store.leases:
                store.leases[self.token]["init"] = [pid, process.start_time(pid) or 0]
        try:
            links.connect(pid, self.lease["bridge"], self.lease["veth"],
                          ipaddress.IPv4Interface(f"{self.address}/{self.prefix}"), self.gateway,
                          self.lease["mac"], mtu)
        except OSError as err:
            raise NetworkError(str(err)) from None

    def release(self) -> None:
        for holder in self.held:
            holder.close()
        self.held = []
        release(self.token)


def reserve(container_id: str, root: str, network: Network, hostname: str) -> Attachment:
    """Everything of a bridged interface that does not need the init yet (see the docstring)."""
    from execdriver.linux.network import etc, ipam, ports

    token = os.urandom(8).hex()
    lease: dict[str, Any] = {"id": container_id, "root": root, "bridge": network.bridge, "ip": "", "mac": "",
                             "veth": ipam.veth(token), "ports": [], "files": "", "holder": ipam.me(),
                             "init": None}
    held: list[socket.socket] = []
    with ipam.Store() as store:
        for stale in store.stale():
            _release(store, stale)
        store.leases[token] = lease  # from here on, _release undoes whatever was done
        try:
            bridge = _bridge(store, network)
            lease["ip"] = ipam.allocate(_network(bridge), bridge["gateway"],
                                        (other["ip"] for other in store.leases.values()
                                         if other is not lease and other["bridge"] == lease["bridge"]),
                                        network.ip)
            lease["mac"] = network.mac or ipam.mac_of(lease["ip"])
            bindings, held = ports.reserve(network.ports)
            ports.publish(lease["ip"], bindings)
            lease["ports"] = bindings
            lease["files"] = os.path.join(store.directory, "files", token)
            etc.write(lease["files"], lease["ip"], hostname)
        except BaseException as err:
            for holder in held:
                holder.close()
            _release(store, token)
            if isinstance(err, OSError):
                raise NetworkError(f"network: {err.strerror or err}") from None
            raise
    return Attachment(token, lease, bridge["gateway"], _network(bridge).prefixlen, held)


def _network(bridge: dict[str, Any]) -> Any:
    import ipaddress

    return ipaddress.IPv4Network(bridge["subnet"])


def _bridge(store: Store, network: Network) -> dict[str, Any]:
    """The bridge's record: found on the host, or created with a subnet from the pool."""
    import ipaddress

    from execdriver.linux.network import ipam, links, ports

    name = network.bridge
    record = store.bridges.get(name)
    if record is not None and links.is_bridge(name):
        return record  # as we left it (a bridge that went away is made again below)
    exists, address = links.bridge_address(name)
    if not exists:
        candidates, prefix = ipam.pool(network.pool)
        in_use = [*links.routed(), *(ipaddress.IPv4Network(b["subnet"]) for b in store.bridges.values())]
        subnet = ipam.choose_subnet(candidates, prefix, in_use)
        address = ipaddress.IPv4Interface(f"{next(subnet.hosts())}/{prefix}")
        links.create_bridge(name, address, ipam.mac_of(str(address.ip)))
        created = True
    elif address is None:
        raise ConfigError(f"network.interface.bridge: {name} has no IPv4 address; give it one, "
                          "or name a bridge that does not exist and execdriver creates it")
    else:
        created = bool(record and record["created"])
    record = store.bridges[name] = {"subnet": str(address.network), "gateway": str(address.ip), "created": created}
    # 127.0.0.1 to a published port leaves through the bridge (ports.py);
    # other hosts' traffic to one is forwarded, as Docker turns on too.
    links.set_sysctl(f"ipv4/conf/{name}/route_localnet", "1")
    links.set_sysctl("ipv4/ip_forward", "1")
    ports.ensure_table()
    ports.add_bridge(name, record["subnet"])
    return record


def _release(store: Store, token: str) -> None:
    from execdriver.linux.network import etc, ipam, links, ports

    lease = store.leases.get(token)
    if lease is None:
        return
    if lease["ports"]:
        ports.unpublish(lease["ip"], lease["ports"])
    if ipam.alive(lease["init"]) or any(ipam.alive(joiner) for joiner in lease.get("joined", ())):
        # The namespace lives on (a live container being cleaned, or one
        # that joined its network): its interface goes now. Otherwise the
        # namespace is going, and the kernel deletes the pair with it, off
        # our path: a deletion here would wait for an RCU grace period,
        # some 30 ms.
        links.delete(lease["veth"])
    if lease["files"]:
        etc.remove(lease["files"])
    del store.leases[token]
    name = lease["bridge"]
    record = store.bridges.get(name)
    if record is not None and not any(other["bridge"] == name for other in store.leases.values()):
        ports.remove_bridge(name, record["subnet"])
        if record["created"] and not [port for port in links.ports_of(name) if not ipam.is_veth(port)]:
            links.delete(name)  # nothing but our dying veths on it
        del store.bridges[name]
    if not store.leases:
        ports.drop_table()


def release(token: str) -> None:
    """Release the lease ``token`` and whatever it holds on the host; nothing if it is gone."""
    from execdriver.linux.network import ipam

    with ipam.Store() as store:
        _release(store, token)


def release_container(root: str, container_id: str) -> None:
    """Release the lease of a container of the state directory ``root``, if it has one."""
    if not any_network_lease():
        return
    from execdriver.linux.network import ipam

    with ipam.Store() as store:
        token = store.find(root, container_id)
        if token is not None:
            _release(store, token)


def joined(root: str, container_id: str, pid: int) -> None:
    """Record that the init ``pid`` joined the network namespace of a bridged container.

    The namespace then outlives that container's init: releasing its lease
    must delete its interface rather than leave it to the namespace's end.
    """
    if not any_network_lease():
        return
    from execdriver.linux import process
    from execdriver.linux.network import ipam

    with ipam.Store() as store:
        token = store.find(root, container_id)
        if token is not None:
            lease = store.leases[token]
            lease["joined"] = [*(j for j in lease.get("joined", ()) if ipam.alive(j)),
                               [pid, process.start_time(pid) or 0]]


def published(root: str, container_id: str) -> list[list[Any]]:
    """[protocol, host address, host port, container port] of each port the container publishes."""
    if not any_network_lease():
        return []
    from execdriver.linux.network import ipam

    with ipam.Store() as store:
        token = store.find(root, container_id)
        return list(store.leases[token]["ports"]) if token is not None else []


def files_of(root: str, container_id: str) -> str:
    """The directory of a bridged container's /etc files, "" if it has none."""
    if not any_network_lease():
        return ""
    from execdriver.linux.network import ipam

    with ipam.Store() as store:
        token = store.find(root, container_id)
        return str(store.leases[token]["files"]) if token is not None else ""

