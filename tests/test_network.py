"""Networking: none, host, another container's, and bridges with published ports.

Every bridge, dummy link and namespace here has a unique name and is the
test's own; containers take their subnets from a pool of the tests'
(10.213.0.0/16). An "outside host" is a network namespace of the test's,
joined to the host by a veth pair with TEST-NET-2 addresses: no traffic
leaves loopback, the bridges and those pairs, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from execdriver import (
    Command,
    ConfigError,
    Hooks,
    Mount,
    Network,
    NetworkError,
    NetworkInterface,
    NotRunningError,
    OOMEvents,
    Pipes,
    PortBinding,
    ProcessConfig,
)
from execdriver.linux import netfilter, network, syscalls
from execdriver.linux.network import ipam
from execdriver.native.driver import NativeDriver
from tests.helpers import run, shell

POOL = ("10.213.0.0/16", 24)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A TCP and a UDP echo server that say who called: the container's main
# program in the tests that publish ports (the host's python3, through the
# host view rootfs="/").
SERVER = textwrap.dedent("""
    import selectors, signal, socket, sys
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # as pid 1, it has no default action
    tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("0.0.0.0", 80)); tcp.listen(64)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("0.0.0.0", 53))
    events = selectors.DefaultSelector()
    events.register(tcp, selectors.EVENT_READ); events.register(udp, selectors.EVENT_READ)
    while True:
        for key, _ in events.select():
            if key.fileobj is tcp:
                client, peer = tcp.accept(); client.settimeout(5)
                client.sendall(b"tcp " + peer[0].encode() + b" " + client.recv(100)); client.close()
            else:
                data, peer = udp.recvfrom(100); udp.sendto(b"udp " + peer[0].encode() + b" " + data, peer)
""")


def _link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def _leases_of(root: Path) -> list[dict[str, object]]:
    try:
        with open(os.path.join(network.STATE_DIR, "state.json"), encoding="utf-8") as handle:
            leases = json.load(handle)["leases"].values()
    except FileNotFoundError:
        return []
    return [lease for lease in leases if lease["root"] == str(root)]


def _our_rules() -> str:
    """Our nftables table's elements that point into the tests' pool ("" without the table)."""
    try:
        listing = netfilter.run("list table ip execdriver")
    except netfilter.NetfilterError:
        return ""
    return "\n".join(line for line in listing.splitlines() if "10.213." in line and ":" in line)


def _veths() -> set[str]:
    return {name for name in os.listdir("/sys/class/net") if ipam.is_veth(name)}


@pytest.fixture()
def net_driver(state_root: Path) -> Iterator[NativeDriver]:
    before = _veths()
    with NativeDriver(root=str(state_root), subnet_pool=POOL) as native:
        yield native
    assert _leases_of(state_root) == []
    assert _our_rules() == ""
    deadline = time.monotonic() + 10  # the kernel deletes a dead namespace's veth pair a moment later
    while _veths() - before:
        assert time.monotonic() < deadline, f"veths left behind: {_veths() - before}"
        time.sleep(0.02)


@pytest.fixture()
def bridge() -> Iterator[str]:
    """A bridge name of this test's; the runtime creates it, and must remove it."""
    name = f"edt{uuid.uuid4().hex[:8]}"
    yield name
    if _link_exists(name):
        subprocess.run(["ip", "link", "del", name], check=False)
        pytest.fail(f"bridge {name} was left behind")


@contextlib.contextmanager
def in_netns(path: str) -> Iterator[None]:
    """This thread in the network namespace at ``path`` (sockets made here stay in it)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(path, os.O_RDONLY)
    try:
        syscalls.setns(target, syscalls.CLONE_NEWNET)
        yield
    finally:
        syscalls.setns(own, syscalls.CLONE_NEWNET)
        os.close(own)
        os.close(target)


class Outside:
    """A host elsewhere: a namespace of the test's, on a veth pair from the host."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.name, self.host_end = f"edto-{tag}", f"vo{tag}"
        base = random.randrange(0, 64) * 4
        self.host_address, self.address = f"198.51.100.{base + 1}", f"198.51.100.{base + 2}"
        self.path = f"/run/netns/{self.name}"
        # ip makes /run/netns, a bind mount of itself, where it is missing: removed in close if so.
        self.made_netns_dir = not os.path.exists("/run/netns")
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        try:
            subprocess.run(["ip", "link", "add", self.host_end, "type", "veth", "peer", "name", "eth0",
                            "netns", self.name], check=True)
            subprocess.run(["ip", "addr", "add", f"{self.host_address}/30", "dev", self.host_end], check=True)
            subprocess.run(["ip", "link", "set", self.host_end, "up"], check=True)
            for command in (["addr", "add", f"{self.address}/30", "dev", "eth0"],
                            ["link", "set", "eth0", "up"], ["link", "set", "lo", "up"]):
                subprocess.run(["ip", "-n", self.name, *command], check=True)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_end], check=False)
        subprocess.run(["ip", "netns", "del", self.name], check=False)
        if self.made_netns_dir and os.path.isdir("/run/netns") and not os.listdir("/run/netns"):
            subprocess.run(["umount", "/run/netns"], capture_output=True, check=False)
            os.rmdir("/run/netns")


@pytest.fixture()
def outside() -> Iterator[Outside]:
    host = Outside()
    yield host
    host.close()


def _socket(kind: int, netns: str | None) -> socket.socket:
    if netns is None:
        return socket.socket(socket.AF_INET, kind)
    with in_netns(netns):
        return socket.socket(socket.AF_INET, kind)


def tcp_ask(address: str, port: int, payload: bytes, netns: str | None = None, timeout: float = 10.0) -> bytes:
    """Connect and read the answer, retrying (bounded) while the server is not up yet."""
    deadline = time.monotonic() + timeout
    while True:
        with _socket(socket.SOCK_STREAM, netns) as sock:
            sock.settimeout(2)
            try:
                sock.connect((address, port))
                sock.sendall(payload)
                return sock.recv(200)
            except OSError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.05)


def udp_ask(address: str, port: int, payload: bytes, netns: str | None = None, timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    with _socket(socket.SOCK_DGRAM, netns) as sock:
        sock.settimeout(0.3)
        while True:
            sock.sendto(payload, (address, port))
            try:
                return sock.recv(200)
            except OSError:
                if time.monotonic() > deadline:
                    raise


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


class Background:
    """A container run in a thread, with its output collected; killed on close."""

    def __init__(self, driver: NativeDriver, command: Command) -> None:
        self.driver, self.command = driver, command
        self.out, self.err = io.BytesIO(), io.BytesIO()
        self.result: dict[str, object] = {}
        started = threading.Event()

        def on_start(_config: ProcessConfig, pid: int, _oom: OOMEvents) -> None:
            self.result["pid"] = pid
            started.set()

        def target() -> None:
            try:
                self.result["status"] = driver.run(command, Pipes(stdout=self.out, stderr=self.err),
                                                   Hooks(start=on_start))
            except BaseException as err:  # noqa: BLE001 - handed to the test
                self.result["error"] = err
                started.set()

        self.thread = threading.Thread(target=target)
        self.thread.start()
        assert started.wait(20), "container did not start"
        assert "error" not in self.result, self.result

    def close(self) -> None:
        try:
            self.driver.terminate(self.command)
        except NotRunningError:
            pass
        self.thread.join(20)
        assert not self.thread.is_alive()


@contextlib.contextmanager
def background(driver: NativeDriver, command: Command) -> Iterator[Background]:
    container = Background(driver, command)
    try:
        yield container
    finally:
        container.close()


def server(cid: str, network: Network) -> Command:
    return Command(id=cid, rootfs="/", network=network,
                   process_config=ProcessConfig(entrypoint="python3", arguments=["-I", "-c", SERVER]))


def bridged(bridge: str, ports: Mapping[str, list[PortBinding]] | None = None, **fields: object) -> Network:
    port_map: dict[str, list[PortBinding] | None] | None = dict(ports) if ports is not None else None
    return Network(interface=NetworkInterface(bridge=bridge, port_bindings=port_map, **fields))  # type: ignore[arg-type]


def _address_of(driver: NativeDriver, command: Command) -> str:
    lease = [lease for lease in _leases_of(Path(driver._store.root)) if lease["id"] == command.id]
    assert len(lease) == 1
    return str(lease[0]["ip"])


# -- modes ----------------------------------------------------------------------


def test_default_is_loopback_alone(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    status, out, _ = run(driver, shell(cid, busybox_rootfs, "ls /sys/class/net; readlink /proc/self/ns/net"))
    names = out.split()
    assert status.exit_code == 0 and names[:-1] == ["lo"]
    assert names[-1] != os.readlink("/proc/self/ns/net")


def test_host_networking_keeps_the_hosts_namespace(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    command = shell(cid, busybox_rootfs, "readlink /proc/self/ns/net; ls /sys/class/net",
                    network=Network(host_networking=True))
    status, out, _ = run(driver, command)
    lines = out.split()
    assert status.exit_code == 0 and lines[0] == os.readlink("/proc/self/ns/net")
    assert sorted(lines[1:]) == sorted(os.listdir("/sys/class/net"))


def test_bridge_gives_eth0_an_address_a_route_and_files_of_its_own(
        net_driver: NativeDriver, rootfs: Path, bridge: str, cid: str) -> None:
    script = ("ip -4 -o addr show eth0; ip route; cat /sys/class/net/eth0/address /sys/class/net/eth0/mtu; "
              "echo ---; cat /etc/hosts; echo ---; cat /etc/hostname; echo ---; cat /etc/resolv.conf; "
              "echo changed > /etc/hosts")
    command = shell(cid, rootfs, script, hostname="web", network=Network(
        interface=NetworkInterface(bridge=bridge), mtu=1400))
    status, out, err = run(net_driver, command)
    assert status.exit_code == 0, err
    head, hosts, hostname, resolv = out.split("---\n")
    address = head.split()[3]
    ip, prefix = address.split("/")
    assert ip.startswith("10.213.") and prefix == "24"
    gateway = ip.rsplit(".", 1)[0] + ".1"
    assert f"default via {gateway} dev eth0" in head
    mac = "02:42:" + ":".join(f"{int(b):02x}" for b in ip.split("."))
    assert head.split()[-2:] == [mac, "1400"]
    assert f"{ip}\tweb" in hosts and "127.0.0.1\tlocalhost" in hosts
    assert hostname == "web\n"
    assert "nameserver" in resolv and "nameserver 127." not in resolv
    # The image's own files are untouched.
    assert (rootfs / "etc" / "hosts").read_text() == "127.0.0.1\tlocalhost\n"
    assert (rootfs / "etc" / "hostname").read_text() == "image\n"


def test_existing_bridge_given_address_and_mac(net_driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    name = f"edt{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "10.213.250.1/24", "dev", name], check=True)
        subprocess.run(["ip", "link", "set", name, "up"], check=True)
        network = bridged(name, ip_address="10.213.250.77", mac_address="02:00:00:aa:bb:cc")
        command = shell(cid, busybox_rootfs, "ip -4 -o addr show eth0; cat /sys/class/net/eth0/address",
                        network=network)
        status, out, _ = run(net_driver, command)
        assert status.exit_code == 0
        assert "10.213.250.77/24" in out and out.split()[-1] == "02:00:00:aa:bb:cc"
        assert _link_exists(name), "a bridge execdriver did not create must stay"
        deadline = time.monotonic() + 10  # the veth goes with the container's namespace, a moment later
        while os.listdir(f"/sys/class/net/{name}/brif"):
            assert time.monotonic() < deadline, "the veth stayed on the bridge"
            time.sleep(0.02)
        with pytest.raises(ConfigError, match=r"network.interface.ip: 10.213.9.9 is not a host address"):
            run(net_driver, shell(cid, busybox_rootfs, "true", network=bridged(name, ip_address="10.213.9.9")))
    finally:
        subprocess.run(["ip", "link", "del", name], check=False)


def test_new_bridge_skips_subnets_the_host_routes(net_driver: NativeDriver, busybox_rootfs: Path, bridge: str,
                                                   cid: str) -> None:
    dummy = f"edd{uuid.uuid4().hex[:8]}"  # an empty bridge of the test's: this kernel has no dummy links
    subprocess.run(["ip", "link", "add", dummy, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "10.213.0.1/23", "dev", dummy], check=True)
        status, out, _ = run(net_driver, shell(cid, busybox_rootfs, "ip -4 -o addr show eth0",
                                               network=bridged(bridge)))
        assert status.exit_code == 0 and "10.213.2.2/24" in out
    finally:
        subprocess.run(["ip", "link", "del", dummy], check=False)


def test_two_containers_on_one_bridge_talk_tcp(net_driver: NativeDriver, bridge: str, cid: str) -> None:
    with background(net_driver, server(cid, bridged(bridge))) as first:
        address = _address_of(net_driver, first.command)
        client = ("import socket, time\n"
                  "for attempt in range(100):\n"
                  "    try:\n"
                  f"        s = socket.create_connection(({address!r}, 80), timeout=2); break\n"
                  "    except OSError: time.sleep(0.05)\n"
                  "s.sendall(b'hello'); print(s.recv(100).decode())\n")
        second = Command(id=f"{cid}-b", rootfs="/", network=bridged(bridge),
                         process_config=ProcessConfig(entrypoint="python3", arguments=["-I", "-c", client]))
        status, out, err = run(net_driver, second)
        assert status.exit_code == 0, err
        peer = out.split()[1]
        assert out.split()[0::2] == ["tcp", "hello"] and peer.startswith("10.213.") and peer != address
        eth0 = [i for i in net_driver.stats(cid).interfaces or () if i["name"] == "eth0"]
        assert len(eth0) == 1
        counters = eth0[0]
        assert counters["rx_bytes"] > 0 and counters["rx_packets"] > 0
        assert counters["tx_bytes"] > 0 and counters["tx_packets"] > 0
        assert {"rx_errors", "rx_dropped", "tx_errors", "tx_dropped"} <= set(counters)


def test_published_ports_from_outside_and_through_loopback(net_driver: NativeDriver, bridge: str,
                                                           outside: Outside, cid: str) -> None:
    udp_port = free_port(socket.SOCK_DGRAM)
    ports = {"80/tcp": [PortBinding(host_ip="", host_port="")], "53/udp": [PortBinding("", str(udp_port))]}
    with background(net_driver, server(cid, bridged(bridge, ports))) as container:
        lease = next(lease for lease in _leases_of(Path(net_driver._store.root)) if lease["id"] == cid)
        bound = {(p[0], p[3]): p[2] for p in lease["ports"]}  # type: ignore[attr-defined]
        tcp_port = bound[("tcp", 80)]
        assert bound[("udp", 53)] == udp_port and tcp_port > 0
        # From the other host: its own address is what the container sees.
        answer = tcp_ask(outside.host_address, tcp_port, b"ping", netns=outside.path)
        assert answer == f"tcp {outside.address} ping".encode()
        answer = udp_ask(outside.host_address, udp_port, b"ping", netns=outside.path)
        assert answer == f"udp {outside.address} ping".encode()
        # From the host itself, through 127.0.0.1 (masqueraded with the bridge's address).
        assert tcp_ask("127.0.0.1", tcp_port, b"local").startswith(b"tcp 10.213.")
        assert udp_ask("127.0.0.1", udp_port, b"local").startswith(b"udp 10.213.")
        # The port is ours while the container runs: nothing else may bind it.
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("", tcp_port))
        assert container.result.get("error") is None


def test_host_ip_binds_only_there(net_driver: NativeDriver, bridge: str, outside: Outside, cid: str) -> None:
    port = free_port()
    ports = {"80/tcp": [PortBinding(host_ip="127.0.0.1", host_port=str(port))]}
    with background(net_driver, server(cid, bridged(bridge, ports))):
        assert tcp_ask("127.0.0.1", port, b"x").startswith(b"tcp ")
        with pytest.raises(OSError):
            tcp_ask(outside.host_address, port, b"x", netns=outside.path, timeout=0.5)


CRAFT = textwrap.dedent("""
    import socket, struct, sys, time
    gateway, gateway_mac, loop_port, gateway_port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    own = open("/etc/hosts").read().split()[-2]
    own_mac = open("/sys/class/net/eth0/address").read().strip()
    def checksum(header):
        total = sum(struct.unpack("!10H", header))
        total = (total >> 16) + (total & 0xFFFF)
        return ~(total + (total >> 16)) & 0xFFFF
    def frame(destination, port, payload):
        udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                         socket.inet_aton(own), socket.inet_aton(destination))
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
        macs = bytes.fromhex(gateway_mac.replace(":", "") + own_mac.replace(":", ""))
        return macs + b"\\x08\\x00" + ip + udp
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    raw.bind(("eth0", 0))
    for _ in range(10):
        raw.send(frame("127.0.0.1", loop_port, b"loopback"))
        raw.send(frame(gateway, gateway_port, b"gateway"))
        time.sleep(0.05)
""")


def test_a_container_cannot_reach_the_hosts_loopback_through_the_bridge(
        net_driver: NativeDriver, bridge: str, cid: str) -> None:
    """route_localnet is on for the bridge: a crafted packet to 127.0.0.1 must still not get in."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as loopback, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as anywhere:
        loopback.bind(("127.0.0.1", 0))
        anywhere.bind(("0.0.0.0", 0))  # the control: the same packet to the gateway arrives
        keeper = server(f"{cid}-k", bridged(bridge))  # keeps the bridge up, so its MAC is known
        with background(net_driver, keeper):
            gateway = _address_of(net_driver, keeper).rsplit(".", 1)[0] + ".1"
            mac = Path(f"/sys/class/net/{bridge}/address").read_text().strip()
            attacker = Command(id=cid, rootfs="/", network=bridged(bridge), process_config=ProcessConfig(
                entrypoint="python3", arguments=["-I", "-c", CRAFT, gateway, mac, str(loopback.getsockname()[1]),
                                                 str(anywhere.getsockname()[1])]))
            status, _, err = run(net_driver, attacker)
            assert status.exit_code == 0, err
        anywhere.settimeout(5)
        assert anywhere.recv(100) == b"gateway"  # crafting works
        loopback.settimeout(0.5)
        with pytest.raises(TimeoutError):
            loopback.recv(100)


def test_a_taken_port_is_a_clear_error_and_leaves_nothing(net_driver: NativeDriver, busybox_rootfs: Path,
                                                         bridge: str, cid: str) -> None:
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = shell(cid, busybox_rootfs, "true", network=bridged(
            bridge, {"80/tcp": [PortBinding("", str(port))]}))
        with pytest.raises(NetworkError, match=rf"host port 0.0.0.0:{port}/tcp is already in use"):
            run(net_driver, command)
    assert not _link_exists(bridge)
    assert _leases_of(Path(net_driver._store.root)) == []
    assert net_driver.list() == []


def test_container_joins_another_containers_network(net_driver: NativeDriver, bridge: str, busybox_rootfs: Path,
                                                    cid: str) -> None:
    first = shell(cid, busybox_rootfs, "sleep 60", network=bridged(bridge))
    with background(net_driver, first):
        init = int(first.container_pid)
        script = "readlink /proc/self/ns/net; ls /sys/class/net; cat /sys/class/net/eth0/address; cat /etc/hosts"
        command = shell(f"{cid}-b", busybox_rootfs, script, network=Network(container_id=cid))
        status, out, _ = run(net_driver, command)
        assert status.exit_code == 0
        lines = out.split("\n")
        address = _address_of(net_driver, first)
        assert lines[0] == os.readlink(f"/proc/{init}/ns/net")
        assert lines[1:3] == ["eth0", "lo"]
        assert lines[3] == "02:42:" + ":".join(f"{int(b):02x}" for b in address.split("."))
        assert address in out
    with pytest.raises(ConfigError, match=rf"network.container_id: container {cid} is not running"):
        run(net_driver, shell(f"{cid}-c", busybox_rootfs, "true", network=Network(container_id=cid)))


def test_a_joined_network_loses_its_interface_with_its_owner(net_driver: NativeDriver, bridge: str,
                                                            busybox_rootfs: Path, cid: str) -> None:
    owner = shell(cid, busybox_rootfs, "sleep 60", network=bridged(bridge))
    with background(net_driver, owner) as first:
        address = _address_of(net_driver, owner)
        joiner = shell(f"{cid}-b", busybox_rootfs, "sleep 60", network=Network(container_id=cid))
        with background(net_driver, joiner):
            first.close()
            out = io.BytesIO()
            config = ProcessConfig(entrypoint="ls", arguments=["/sys/class/net"])
            assert net_driver.exec(joiner, config, Pipes(stdout=out)) == 0
            assert out.getvalue().split() == [b"lo"]
            # Its address is free again, and nothing answers for it twice.
            status, text, _ = run(net_driver, shell(f"{cid}-c", busybox_rootfs, "ip -4 -o addr show eth0",
                                                    network=bridged(bridge)))
            assert status.exit_code == 0 and f"{address}/24" in text


def test_thirty_containers_at_once_get_distinct_addresses(net_driver: NativeDriver, busybox_rootfs: Path,
                                                          bridge: str, cid: str, tmp_path: Path) -> None:
    # Each writes its address to a shared directory and stays until all 30
    # have: the addresses are those of 30 containers alive at one time.
    shared = tmp_path / "shared"
    shared.mkdir()
    script = ("ip -4 -o addr show eth0 | awk '{print $4}' > /shared/$HOSTNAME; "
              "for i in $(seq 300); do [ $(ls /shared | wc -l) -ge 30 ] && break; sleep 0.1; done; "
              "cat /shared/$HOSTNAME")

    def one(index: int) -> str:
        command = shell(f"{cid}-{index}", busybox_rootfs, script, network=bridged(bridge), hostname=f"c{index}",
                        mounts=[Mount(source=str(shared), destination="/shared", writable=True)])
        status, out, err = run(net_driver, command)
        assert status.exit_code == 0, err
        return out.strip()

    with ThreadPoolExecutor(max_workers=30) as pool:
        addresses = list(pool.map(one, range(30)))
    assert len(os.listdir(shared)) == 30
    assert len(set(addresses)) == 30, sorted(addresses)


_KILLED = """
import sys, time
sys.path.insert(0, {root!r})
from execdriver import Command, Network, NetworkInterface, Pipes, PortBinding, ProcessConfig
from execdriver.native.driver import NativeDriver
driver = NativeDriver(root={state!r}, subnet_pool=("10.213.0.0/16", 24))
ports = {{"80/tcp": [PortBinding("", "")]}}
command = Command(id={cid!r}, rootfs={rootfs!r}, network=Network(interface=NetworkInterface(
    bridge={bridge!r}, port_bindings=ports)), process_config=ProcessConfig(entrypoint="sleep", arguments=["60"]))
driver.run(command, Pipes())
"""


def _start_a_bridged_container(state_root: Path, busybox_rootfs: Path, bridge: str,
                               cid: str) -> subprocess.Popen[bytes]:
    """A program of its own runs a bridged container (_KILLED); returned once the container is on the bridge."""
    script = _KILLED.format(root=ROOT, state=str(state_root), cid=cid, rootfs=str(busybox_rootfs), bridge=bridge)
    starter = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 20
    while not (_leases_of(state_root) and _leases_of(state_root)[0]["init"]
               and os.listdir(f"/sys/class/net/{bridge}/brif")):
        if starter.poll() is not None or time.monotonic() > deadline:
            starter.kill()
            starter.wait()
            pytest.fail("the container did not start")
        time.sleep(0.02)
    return starter


def test_everything_goes_when_the_starter_is_killed(state_root: Path, busybox_rootfs: Path, bridge: str,
                                                    cid: str) -> None:
    starter = _start_a_bridged_container(state_root, busybox_rootfs, bridge, cid)
    try:
        assert _our_rules() != ""
        starter.send_signal(signal.SIGKILL)
        starter.wait(10)
        deadline = time.monotonic() + 20
        while _leases_of(state_root) or _link_exists(bridge) or _our_rules():
            assert time.monotonic() < deadline, "the network outlived its starter"
            time.sleep(0.05)
        while [name for name in os.listdir(state_root) if not name.startswith(".")]:
            assert time.monotonic() < deadline, "the state outlived its starter"
            time.sleep(0.05)
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait()


def test_clean_releases_the_network_of_a_container_whose_starter_is_stuck(
        state_root: Path, busybox_rootfs: Path, bridge: str, cid: str) -> None:
    starter = _start_a_bridged_container(state_root, busybox_rootfs, bridge, cid)
    try:
        starter.send_signal(signal.SIGSTOP)  # it can release nothing now: clean must
        with NativeDriver(root=str(state_root), fork_server=False) as other:
            other.clean(cid)
        assert _leases_of(state_root) == [] and _our_rules() == "" and not _link_exists(bridge)
    finally:
        starter.kill()
        starter.wait()
    deadline = time.monotonic() + 20
    while [name for name in os.listdir(state_root) if not name.startswith(".")]:
        assert time.monotonic() < deadline, "the state outlived its starter"
        time.sleep(0.05)


@pytest.mark.parametrize(("network", "message"), [
    (Network(host_networking=True, container_id="x"), "network: host_networking and container_id exclude"),
    (Network(interface=NetworkInterface(ip_address="10.1.2")), "network.interface.ip: '10.1.2' is not an IPv4"),
    (Network(interface=NetworkInterface(mac_address="01:00:5e:00:00:01")), "is a multicast address"),
    (Network(interface=NetworkInterface(mac_address="nope")), "network.interface.mac: 'nope' is not a MAC"),
    (Network(interface=NetworkInterface(bridge="a/b")), "network.interface.bridge: 'a/b' is not an interface"),
    (Network(interface=NetworkInterface(port_bindings={"80/sctp": []})), "protocol 'sctp' is not supported"),
    (Network(interface=NetworkInterface(port_bindings={"80": [PortBinding("", "70000")]})),
     r"port_bindings\['80'\]\[0\].HostPort: '70000' is not a port"),
    (Network(interface=NetworkInterface(port_bindings={"80": [PortBinding("::1", "")]})), "is not an IPv4"),
    (Network(mtu=20, interface=NetworkInterface()), "network.mtu: 20 is not between"),
])
def test_bad_network_settings_name_the_field(net_driver: NativeDriver, busybox_rootfs: Path, cid: str,
                                             network: Network, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run(net_driver, shell(cid, busybox_rootfs, "true", network=network))
    assert net_driver.list() == []


# -- the sandbox CLI ----------------------------------------------------------------


def test_sandbox_cli_bridge_and_published_port(state_root: Path, bridge: str) -> None:
    from tests.test_cli import CLI

    base = [*CLI, "--root", str(state_root), "sandbox", "--subnet-pool", "10.213.0.0/16:24"]
    result = subprocess.run([*base, "--network", f"bridge:{bridge}", "--ip", "10.213.0.9", "--",
                             "sh", "-c", "ip -4 -o addr show eth0; cat /etc/hostname"],
                            capture_output=True, text=True, timeout=30, check=False, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert "10.213.0.9/24" in result.stdout and result.stdout.endswith("sandbox\n")
    assert not _link_exists(bridge)

    port = free_port()
    server = subprocess.Popen([*base, "--network", f"bridge:{bridge}", "-p", f"127.0.0.1:{port}:80",
                               "--", "python3", "-I", "-c", SERVER], stdin=subprocess.DEVNULL)
    try:
        assert tcp_ask("127.0.0.1", port, b"cli").startswith(b"tcp 10.213.")
    finally:
        server.send_signal(signal.SIGTERM)  # forwarded to the container
        try:
            server.wait(20)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    assert not _link_exists(bridge) and _leases_of(state_root) == [] and _our_rules() == ""

    bad = subprocess.run([*base, "-p", "80", "true"], capture_output=True, text=True, timeout=30, check=False)
    assert bad.returncode == 2 and "add --network bridge" in bad.stderr


def test_sandbox_cli_killed_leaves_nothing(state_root: Path, bridge: str) -> None:
    from tests.test_cli import CLI

    port = free_port()
    cli = subprocess.Popen([*CLI, "--root", str(state_root), "sandbox", "--subnet-pool", "10.213.0.0/16:24",
                            "--network", f"bridge:{bridge}", "-p", f"{port}:80", "--", "sleep", "60"],
                           stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not (_leases_of(state_root) and _leases_of(state_root)[0]["init"]):
            assert cli.poll() is None and time.monotonic() < deadline, "the container did not start"
            time.sleep(0.02)
        cli.send_signal(signal.SIGKILL)
        cli.wait(10)
        deadline = time.monotonic() + 20
        while (_leases_of(state_root) or _link_exists(bridge) or _our_rules()
               or any(not name.startswith(".") for name in os.listdir(state_root))):
            assert time.monotonic() < deadline, "the container's network or state outlived the CLI"
            time.sleep(0.05)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
