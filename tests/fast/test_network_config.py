"""execdriver/linux/network/config.py (a container's network, checked) and ipam.py's pure helpers."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from execdriver.errors import ConfigError
from execdriver.linux.network import config, ipam

pytestmark = pytest.mark.fast


def _fields(network: Any) -> dict[str, Any]:
    """The parsed network's fields (a Network's slots; a dict as the launch spec once carried it)."""
    if isinstance(network, dict):
        return network
    return {name: getattr(network, name) for name in ("mode", "bridge", "ip", "mac", "mtu", "ports", "container")}


def test_no_network_is_loopback_alone() -> None:
    assert config.parse() is None
    assert config.parse(mtu=1500) is None


def test_host_and_container_modes() -> None:
    assert _fields(config.parse(host=True))["mode"] == "host"
    joined = _fields(config.parse(container_id="web"))
    assert (joined["mode"], joined["container"]) == ("container", "web")


def test_a_bridged_interface_with_defaults() -> None:
    bridged = _fields(config.parse(bridge=""))
    assert {key: bridged[key] for key in ("mode", "bridge", "ip", "mac", "mtu", "ports")} == {
        "mode": "bridge", "bridge": "execdriver0", "ip": "", "mac": "", "mtu": 0, "ports": []}


def test_a_bridged_interface_with_everything() -> None:
    bridged = _fields(config.parse(
        bridge="br-1.a_b", ip="10.98.0.7", mac="02:42:AC:11:00:02", mtu=9000,
        port_map={"80/tcp": [{"HostIp": "", "HostPort": "8080"}, {"HostIp": "127.0.0.1", "HostPort": ""}],
                  "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "5353"}], "443": None, "22/tcp": []}))
    assert (bridged["bridge"], bridged["ip"], bridged["mac"], bridged["mtu"]) == (
        "br-1.a_b", "10.98.0.7", "02:42:ac:11:00:02", 9000)  # the MAC lower-cased
    # [protocol, host ip ("" any), host port (0: chosen at start), container port]
    assert bridged["ports"] == [["tcp", "", 8080, 80], ["tcp", "127.0.0.1", 0, 80], ["udp", "", 5353, 53]]


def test_ports_at_the_ends_of_the_range() -> None:
    assert config.ports({"1/tcp": [{"HostPort": "65535"}], "65535/udp": [{}]}) == [
        ["tcp", "", 65535, 1], ["udp", "", 0, 65535]]
    assert config.ports(None) == [] and config.ports({}) == []


def test_the_same_host_port_twice_per_protocol_is_refused_but_not_across_protocols() -> None:
    assert len(config.ports({"53/tcp": [{"HostPort": "53"}], "53/udp": [{"HostPort": "53"}]})) == 2
    assert len(config.ports({"80/tcp": [{"HostPort": ""}], "81/tcp": [{"HostPort": ""}]})) == 2  # 0s are chosen later
    with pytest.raises(ConfigError, match=r"^network\.interface\.port_bindings: host port 8080/tcp given twice$"):
        config.ports({"80/tcp": [{"HostPort": "8080"}], "81/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]})


@pytest.mark.parametrize(("arguments", "message"), [
    ({"host": True, "container_id": "x"}, r"^network: host_networking and container_id exclude each other"),
    ({"host": True, "bridge": ""}, r"^network: host_networking and interface exclude each other"),
    ({"container_id": "x", "bridge": "br0"}, r"^network: container_id and interface exclude each other"),
    ({"host": True, "container_id": "x", "bridge": ""}, r"^network: host_networking and container_id and interface"),
    ({"bridge": "", "mtu": 67}, r"^network\.mtu: 67 is not between 68 and 65535$"),
    ({"bridge": "", "mtu": 65536}, r"^network\.mtu: 65536 is not between 68 and 65535$"),
    ({"host": True, "mtu": -1}, r"^network\.mtu: -1 is not between"),
    ({"bridge": "a-name-of-16-chr"}, r"^network\.interface\.bridge: 'a-name-of-16-chr' is not an interface name"),
    ({"bridge": "br 0"}, r"^network\.interface\.bridge: 'br 0' is not an interface name"),
    ({"bridge": "br/0"}, r"is not an interface name"),
    ({"bridge": "br:0"}, r"is not an interface name"),
    ({"bridge": "."}, r"^network\.interface\.bridge: '\.' is not an interface name"),
    ({"bridge": ".."}, r"^network\.interface\.bridge: '\.\.' is not an interface name"),
    ({"bridge": "", "ip": "10.98.0.256"}, r"^network\.interface\.ip: '10\.98\.0\.256' is not an IPv4 address$"),
    ({"bridge": "", "ip": "fd00::1"}, r"^network\.interface\.ip: 'fd00::1' is not an IPv4 address$"),
    ({"bridge": "", "ip": "10.98.0.0/24"}, r"is not an IPv4 address"),
    ({"bridge": "", "mac": "02:42:ac:11:00"}, r"^network\.interface\.mac: '02:42:ac:11:00' is not a MAC address"),
    ({"bridge": "", "mac": "02-42-ac-11-00-02"}, r"is not a MAC address"),
    ({"bridge": "", "mac": "02:42:ac:11:00:0g"}, r"is not a MAC address"),
    ({"bridge": "", "mac": "01:00:5e:00:00:01"},
     r"^network\.interface\.mac: 01:00:5e:00:00:01 is a multicast address$"),
    ({"bridge": "", "mac": "ff:ff:ff:ff:ff:ff"}, r"is a multicast address$"),
    ({"bridge": "", "port_map": {"80/sctp": None}},
     r"^network\.interface\.port_bindings\['80/sctp'\]: protocol 'sctp' is not supported \(tcp or udp\)$"),
    ({"bridge": "", "port_map": {"0/tcp": None}}, r"^network\.interface\.port_bindings\['0/tcp'\]: '0' is not a port"),
    ({"bridge": "", "port_map": {"65536": None}}, r"'65536' is not a port number \(1-65535\)$"),
    ({"bridge": "", "port_map": {"http/tcp": None}}, r"'http' is not a port number"),
    ({"bridge": "", "port_map": {"8000-8010/tcp": None}}, r"'8000-8010' is not a port number"),
    ({"bridge": "", "port_map": {"80/tcp": [{"HostIp": "localhost"}]}},
     r"^network\.interface\.port_bindings\['80/tcp'\]\[0\]\.HostIp: 'localhost' is not an IPv4 address$"),
    ({"bridge": "", "port_map": {"80/tcp": [{}, {"HostPort": "0"}]}},
     r"^network\.interface\.port_bindings\['80/tcp'\]\[1\]\.HostPort: '0' is not a port number"),
    ({"bridge": "", "port_map": {"80/tcp": [{"HostPort": "8080-8081"}]}}, r"\.HostPort: '8080-8081' is not a port"),
    ({"bridge": "", "port_map": {"80/tcp": [{"HostPort": " 80"}]}}, r"\.HostPort: ' 80' is not a port"),
])
def test_refusals(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.parse(**arguments)


@pytest.mark.parametrize("arguments", [{"bridge": "br0\n"}, {"bridge": "", "mac": "02:42:ac:11:00:02\n"}])
def test_a_trailing_newline_is_refused(arguments: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        config.parse(**arguments)


def test_a_superscript_digit_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        config.parse(bridge="", port_map={"²/tcp": None})


# --- ipam.py: the allocator's pure helpers ------------------------------------------------------


def test_veth_names() -> None:
    token = "0123456789abcdef0123"
    assert ipam.veth(token) == "ve0123456789ab"
    assert len(ipam.veth(token)) == 14  # within IFNAMSIZ
    assert ipam.is_veth(ipam.veth(token))
    for name in ("ve0123456789a", "ve0123456789abc", "vx0123456789ab", "ve0123456789aB", "eth0"):
        assert not ipam.is_veth(name), name


def test_pool() -> None:
    assert ipam.pool(None) == (ipaddress.IPv4Network("10.98.0.0/16"), 24)
    assert ipam.pool(["172.30.0.0/16", 28]) == (ipaddress.IPv4Network("172.30.0.0/16"), 28)
    assert ipam.pool(("192.168.0.0/24", 24)) == (ipaddress.IPv4Network("192.168.0.0/24"), 24)


@pytest.mark.parametrize(("spec", "message"), [
    (("10.98.0.1/16", 24), r"^subnet_pool: '10\.98\.0\.1/16' is not an IPv4 network$"),  # host bits set
    (("fd00::/8", 64), r"is not an IPv4 network"),
    (("10.98.0.0/33", 24), r"is not an IPv4 network"),
    (("10.98.0.0/16", 15), r"^subnet_pool: subnets of /15 do not fit in 10\.98\.0\.0/16 \(/16 to /30\)$"),
    (("10.98.0.0/16", 31), r"^subnet_pool: subnets of /31 do not fit"),
])
def test_pool_refusals(spec: tuple[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ipam.pool(spec)


def test_choose_subnet_skips_what_overlaps() -> None:
    pool = ipaddress.IPv4Network("10.98.0.0/16")
    assert ipam.choose_subnet(pool, 24, []) == ipaddress.IPv4Network("10.98.0.0/24")
    routed = [ipaddress.IPv4Network("10.98.0.0/23"), ipaddress.IPv4Network("10.98.2.128/25")]
    assert ipam.choose_subnet(pool, 24, routed) == ipaddress.IPv4Network("10.98.3.0/24")
    assert ipam.choose_subnet(pool, 30, (net for net in routed)) == ipaddress.IPv4Network("10.98.2.0/30")
    with pytest.raises(ConfigError, match=r"^subnet_pool: every /24 of 10\.98\.0\.0/16 is routed on this host"):
        ipam.choose_subnet(pool, 24, [ipaddress.IPv4Network("10.0.0.0/8")])


def test_allocate() -> None:
    subnet = ipaddress.IPv4Network("10.98.0.0/29")  # hosts .1 to .6
    assert ipam.allocate(subnet, "10.98.0.1", []) == "10.98.0.2"
    assert ipam.allocate(subnet, "10.98.0.1", ["10.98.0.2", "10.98.0.4"]) == "10.98.0.3"
    assert ipam.allocate(subnet, "10.98.0.1", [], wanted="10.98.0.6") == "10.98.0.6"
    with pytest.raises(ConfigError, match=r"^network: no free address left in 10\.98\.0\.0/29$"):
        ipam.allocate(subnet, "10.98.0.1", [f"10.98.0.{n}" for n in range(2, 7)])


@pytest.mark.parametrize(("wanted", "message"), [
    ("10.98.0.1", r"^network\.interface\.ip: 10\.98\.0\.1 is in use on this bridge$"),  # the gateway
    ("10.98.0.3", r"^network\.interface\.ip: 10\.98\.0\.3 is in use on this bridge$"),
    ("10.98.0.0", r"^network\.interface\.ip: 10\.98\.0\.0 is not a host address of the bridge's subnet"),
    ("10.98.0.7", r"is not a host address of the bridge's subnet 10\.98\.0\.0/29$"),  # broadcast
    ("10.98.1.2", r"is not a host address"),
])
def test_allocate_refuses_a_wanted_address(wanted: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ipam.allocate(ipaddress.IPv4Network("10.98.0.0/29"), "10.98.0.1", ["10.98.0.3"], wanted=wanted)


def test_mac_of_is_dockers_derived_mac() -> None:
    assert ipam.mac_of("172.17.0.2") == "02:42:ac:11:00:02"
    assert ipam.mac_of("10.98.255.1") == "02:42:0a:62:ff:01"
    assert int(ipam.mac_of("255.255.255.255")[:2], 16) & 1 == 0  # never multicast
