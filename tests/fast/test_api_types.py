"""execdriver/api.py: the reference's structs as dataclasses, their Go JSON form, and the errors."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import execdriver
from execdriver import api, errors
from execdriver.api import (
    Command,
    ExitStatus,
    Hooks,
    IDMap,
    Mount,
    Network,
    NetworkInterface,
    OOMEvents,
    Pipes,
    PortBinding,
    ProcessConfig,
    Resources,
    ResourceStats,
    Rlimit,
)
from execdriver.errors import ConfigError

pytestmark = pytest.mark.fast

REFERENCE = "/work/shared/reference/execdriver-api.txt"

# The JSON names of the reference's structs (Docker's execdriver package, Windows
# build), embedded structs' fields first, in Go's order. Each dataclass writes these
# first; what Docker's Linux build adds follows them.
REFERENCE_TAGS: dict[str, list[str]] = {
    "Command": ["container_pid", "id", "mount_label", "mounts", "network", "process_config", "process_label",
                "resources", "rootfs", "working_dir", "tmpdir",
                "first_start", "hostname", "layer_folder", "layer_paths", "isolation", "args_escaped",
                "hv_partition"],
    "Mount": ["source", "destination", "writable"],
    "Network": ["interface", "container_id"],
    "NetworkInterface": ["mac", "bridge", "ip", "port_bindings"],
    "ProcessConfig": ["tty", "entrypoint", "arguments"],
    "Resources": ["memory", "memory_reservation", "blkio_weight"],
    "ExitStatus": ["ExitCode"],
    "ResourceStats": ["read", "memory_limit", "system_usage"],
}
LINUX_TAGS: dict[str, list[str]] = {
    "Network": ["mtu", "host_networking"],
    "ProcessConfig": ["privileged", "user"],
    "Resources": ["cpu_shares", "memory_swap", "cpu_quota", "cpuset_cpus", "cpuset_mems", "cpu_period",
                  "oom_kill_disable", "pids_limit", "rlimits"],
}
STRUCTS: dict[str, Any] = {
    "Command": Command, "Mount": Mount, "Network": Network, "NetworkInterface": NetworkInterface,
    "ProcessConfig": ProcessConfig, "Resources": Resources,
}


def _keys(text: str) -> list[str]:
    return list(json.loads(text))


def _reference_tags(text: str) -> dict[str, list[str]]:
    """Each struct's JSON names in the reference's godoc text (embedded structs expanded)."""
    bodies = {name: body.splitlines()
              for name, body in re.findall(r"^type (\w+) struct \{\n(.*?)^\}", text, re.MULTILINE | re.DOTALL)}

    def tags(name: str) -> list[str]:
        found: list[str] = []
        for line in bodies[name]:
            words = line.split()
            if not words or line.startswith("//") or words[0].startswith("*"):
                continue  # a comment, or a pointer embedded from another package (libcontainer.Stats)
            if len(words) == 1 and words[0] in bodies:
                found += tags(words[0])
                continue
            tag = re.search(r'`json:"([^",]*)', line)
            if tag is None:
                found.append(words[0].rstrip(","))  # untagged: Go's field name
            elif tag.group(1) != "-":
                found.append(tag.group(1))
        return found

    return {name: tags(name) for name in bodies}


def test_the_table_above_is_the_reference() -> None:
    if not os.access(REFERENCE, os.R_OK):
        pytest.skip(f"{REFERENCE} is not on this machine")
    with open(REFERENCE, encoding="utf-8") as handle:
        parsed = _reference_tags(handle.read())
    for name, tags in REFERENCE_TAGS.items():
        assert parsed[name] == tags, name


@pytest.mark.parametrize("name", sorted(STRUCTS))
def test_json_keeps_the_reference_names_in_go_order(name: str) -> None:
    keys = _keys(STRUCTS[name]().to_json())
    assert keys == REFERENCE_TAGS[name] + LINUX_TAGS.get(name, keys[len(REFERENCE_TAGS[name]):])


def test_command_json_has_docker_linux_tags_after_the_reference() -> None:
    keys = _keys(Command().to_json())
    assert keys[len(REFERENCE_TAGS["Command"]):] == [
        "readonly_rootfs", "cgroup_parent", "cap_add", "cap_drop", "seccomp_profile", "apparmor_profile",
        "no_new_privileges", "oom_score_adj", "uidmapping", "gidmapping", "masked_paths", "readonly_paths",
        "umask", "init"]


def test_port_binding_is_nat_port_binding() -> None:
    assert PortBinding("127.0.0.1", "8080").to_json() == '{"HostIp":"127.0.0.1","HostPort":"8080"}'


def test_exit_status_has_go_field_names() -> None:
    assert ExitStatus(137, oom_killed=True).to_json() == '{"ExitCode":137,"OOMKilled":true}'
    assert _keys(ExitStatus(0).to_json())[:1] == REFERENCE_TAGS["ExitStatus"]


def test_resource_stats_json() -> None:
    moment = datetime.datetime(2024, 5, 6, 7, 8, 9, 123400, tzinfo=datetime.UTC)
    empty = json.loads(ResourceStats(read=moment, memory_limit=64 << 20, system_usage=7).to_json())
    # No libcontainer.Stats: Go leaves the nil embedded pointer's fields out.
    assert empty == {"read": "2024-05-06T07:08:09.1234Z", "memory_limit": 64 << 20, "system_usage": 7}
    full = json.loads(ResourceStats(cgroup_stats={"pids_stats": {"current": 1}}, interfaces=[], read=moment)
                      .to_json())
    assert list(full)[-3:] == REFERENCE_TAGS["ResourceStats"]
    assert full["read"] == "2024-05-06T07:08:09.1234Z"


def test_resource_stats_read_defaults_to_now_in_utc() -> None:
    before = datetime.datetime.now(datetime.UTC)
    read = json.loads(ResourceStats().to_json())["read"]
    assert read.endswith("Z")
    assert before <= datetime.datetime.fromisoformat(read) <= datetime.datetime.now(datetime.UTC)


def test_go_zero_values_nil_slices_and_pointers_are_null() -> None:
    obj = json.loads(Command().to_json())
    assert obj["mounts"] is None and obj["network"] is None and obj["resources"] is None
    assert obj["layer_paths"] is None and obj["umask"] is None
    assert obj["process_config"] == {"tty": False, "entrypoint": "", "arguments": None, "privileged": False,
                                     "user": ""}
    assert obj["container_pid"] == 0 and obj["id"] == "" and obj["first_start"] is False


def test_go_escaping_in_to_json() -> None:
    text = Command(id="a<b>&c", hostname="\u2028").to_json()
    assert '"id":"a\\u003cb\\u003e\\u0026c"' in text
    assert '"hostname":"\\u2028"' in text
    assert Command.from_json(text).id == "a<b>&c"


def test_fields_kept_out_of_json() -> None:
    """exec.Cmd's environment, ConsoleSize and Terminal are json:"-" in Go."""
    process = ProcessConfig(entrypoint="sh", env=["A=1"], console_size=(24, 80), terminal=object())
    obj = json.loads(process.to_json())
    assert "env" not in obj and "console_size" not in obj and "terminal" not in obj
    assert ProcessConfig.from_json(process.to_json()) == ProcessConfig(entrypoint="sh")


def _full_command() -> Command:
    return Command(
        container_pid=4242, id="web-1", mount_label="system_u:object_r:svirt_sandbox_file_t:s0:c1,c2",
        mounts=[Mount("/srv/data", "/data", True), Mount("/etc/hosts", "/etc/hosts")],
        network=Network(interface=NetworkInterface(
            mac_address="02:42:ac:11:00:02", bridge="br0", ip_address="10.98.0.2",
            port_bindings={"80/tcp": [PortBinding("", "8080"), PortBinding("127.0.0.1", "8081")], "53/udp": None,
                           "7000-7001/tcp": []}), container_id="", mtu=1400),
        process_config=ProcessConfig(tty=True, entrypoint="/bin/sh", arguments=["-c", "echo <é> && exit 3"],
                                     privileged=False, user="1000:1000"),
        process_label="system_u:system_r:svirt_lxc_net_t:s0:c1,c2",
        resources=Resources(memory=64 << 20, memory_reservation=32 << 20, blkio_weight=500, cpu_shares=512,
                            memory_swap=-1, cpu_quota=50000, cpuset_cpus="0-1", cpuset_mems="0", cpu_period=100000,
                            oom_kill_disable=False, pids_limit=-1, rlimits=[Rlimit(7, 1024, 1024)]),
        rootfs="/var/lib/rootfs", working_dir="/srv", tmpdir="/tmp/x", first_start=True, hostname="web",
        layer_folder="", layer_paths=["/l/1", "/l/0"], isolation="process", args_escaped=True,
        readonly_rootfs=True, cgroup_parent="docker", cap_add=["NET_ADMIN"], cap_drop=["ALL"],
        seccomp_profile="unconfined", apparmor_profile="", no_new_privileges=True, oom_score_adj=-500,
        uid_mapping=[IDMap(0, 100000, 65536)], gid_mapping=[IDMap(0, 100000, 65536)],
        masked_paths=["/proc/kcore"], readonly_paths=[], umask=0o027, init=True,
    )


def test_command_round_trips() -> None:
    command = _full_command()
    text = command.to_json()
    again = Command.from_json(text)
    assert again == command
    assert again.to_json() == text
    assert Command.from_json(text.encode()) == command  # bytes, as read from a file


def test_port_map_keys_are_sorted_as_go_sorts_map_keys() -> None:
    text = _full_command().to_json()
    port_bindings = json.loads(text)["network"]["interface"]["port_bindings"]
    assert list(port_bindings) == ["53/udp", "7000-7001/tcp", "80/tcp"]
    assert port_bindings["80/tcp"] == [{"HostIp": "", "HostPort": "8080"}, {"HostIp": "127.0.0.1", "HostPort": "8081"}]
    assert port_bindings["53/udp"] is None and port_bindings["7000-7001/tcp"] == []


def test_every_struct_field_is_in_its_json_table_or_kept_out_on_purpose() -> None:
    kept_out = {"ProcessConfig": {"env", "console_size", "terminal"}}
    for struct in (Command, Mount, Network, NetworkInterface, ProcessConfig, Resources, Rlimit, IDMap, PortBinding):
        attributes = [attr for attr, _, _ in struct._json]
        fields = [f.name for f in dataclasses.fields(struct) if f.name not in kept_out.get(struct.__name__, set())]
        assert attributes == fields, struct.__name__


_int64 = st.integers(-(2**63), 2**63 - 1)
_text = st.text(alphabet="az09 /:.-\"\\\x00\n<>&\u00e9\u2028\u65e5\U0001f600", max_size=12)
_resources = st.builds(
    Resources, memory=_int64, memory_reservation=_int64, blkio_weight=st.integers(0, 2**16 - 1), cpu_shares=_int64,
    memory_swap=_int64, cpu_quota=_int64, cpuset_cpus=_text, cpuset_mems=_text, cpu_period=_int64,
    oom_kill_disable=st.booleans(), pids_limit=_int64,
    rlimits=st.none() | st.lists(st.builds(Rlimit, type=st.integers(0, 15), hard=st.integers(0, 2**64 - 1),
                                           soft=st.integers(0, 2**64 - 1)), max_size=2))
_commands = st.builds(
    Command, id=_text, container_pid=_int64, rootfs=_text,
    mounts=st.none() | st.lists(st.builds(Mount, source=_text, destination=_text, writable=st.booleans()),
                                max_size=2),
    process_config=st.builds(ProcessConfig, tty=st.booleans(), entrypoint=_text,
                             arguments=st.none() | st.lists(_text, max_size=3)),
    resources=st.none() | _resources, oom_score_adj=st.integers(-1000, 1000),
    umask=st.none() | st.integers(0, 0o777), cap_add=st.none() | st.lists(_text, max_size=2),
)


@settings(max_examples=100, deadline=None, database=None)
@given(_commands)
def test_any_command_round_trips(command: Command) -> None:
    assert Command.from_json(command.to_json()) == command


# --- from_json: errors name the field -----------------------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    ("{", r"^Command: invalid JSON: "),
    (b"\xff\xfe{", r"^Command: invalid JSON: "),
    ("[]", r"^Command: expected an object, got array$"),
    ("null", r"^Command: expected an object, got null$"),
    ('{"bogus": 1}', r"^bogus: unknown field$"),
    ('{"process_config": {"env": []}}', r"^process_config\.env: unknown field$"),
    ('{"id": 1}', r"^id: expected a string, got number$"),
    ('{"id": null}', r"^id: expected a string, got null$"),
    ('{"first_start": 1}', r"^first_start: expected true or false, got number$"),
    ('{"container_pid": 1.5}', r"^container_pid: expected an integer, got number$"),
    ('{"container_pid": true}', r"^container_pid: expected an integer, got boolean$"),
    ('{"container_pid": "1"}', r"^container_pid: expected an integer, got string$"),
    ('{"container_pid": 9223372036854775808}', r"^container_pid: 9223372036854775808 is out of range"),
    ('{"process_config": {"arguments": ["a", 2]}}', r"^process_config\.arguments\[1\]: expected a string, got number$"),
    ('{"process_config": {"arguments": "a"}}', r"^process_config\.arguments: expected an array, got string$"),
    ('{"process_config": []}', r"^process_config: expected an object, got array$"),
    ('{"mounts": [{"source": "/a", "writable": "yes"}]}', r"^mounts\[0\]\.writable: expected true or false"),
    ('{"resources": {"blkio_weight": 65536}}', r"^resources\.blkio_weight: 65536 is out of range \[0, 65535\]$"),
    ('{"resources": {"blkio_weight": -1}}', r"^resources\.blkio_weight: -1 is out of range"),
    ('{"resources": {"rlimits": [{"type": 16}]}}', r"^resources\.rlimits\[0\]\.type: 16 is out of range \[0, 15\]$"),
    ('{"resources": {"rlimits": [{"hard": -1}]}}', r"^resources\.rlimits\[0\]\.hard: -1 is out of range"),
    ('{"oom_score_adj": 1001}', r"^oom_score_adj: 1001 is out of range \[-1000, 1000\]$"),
    ('{"umask": 512}', r"^umask: 512 is out of range \[0, 511\]$"),
    ('{"uidmapping": [{"container_id": 0, "host_id": 1000, "size": 0}]}', r"^uidmapping\[0\]\.size: 0 is out of range"),
    ('{"gidmapping": [{"container_id": 4294967295, "size": 1}]}', r"^gidmapping\[0\]\.container_id: 4294967295 is out"),
    ('{"network": {"mtu": "1500"}}', r"^network\.mtu: expected an integer, got string$"),
    ('{"network": {"interface": {"port_bindings": {"http": null}}}}',
     r"^network\.interface\.port_bindings\['http'\]: not a port like '80/tcp'$"),
    ('{"network": {"interface": {"port_bindings": {"0/tcp": null}}}}', r"not a port like"),
    ('{"network": {"interface": {"port_bindings": {"65536/tcp": null}}}}', r"not a port like"),
    ('{"network": {"interface": {"port_bindings": {"80/icmp": null}}}}', r"not a port like"),
    ('{"network": {"interface": {"port_bindings": {"90-80/tcp": null}}}}', r"not a port like"),
    ('{"network": {"interface": {"port_bindings": {"80/tcp": [{"HostPort": 80}]}}}}',
     r"^network\.interface\.port_bindings\['80/tcp'\]\[0\]\.HostPort: expected a string, got number$"),
    ('{"network": {"interface": {"port_bindings": {"80/tcp": {}}}}}', r"expected an array, got object$"),
    ('{"network": {"interface": {"port_bindings": []}}}', r"port_bindings: expected an object, got array$"),
])
def test_from_json_refuses_with_the_field_named(text: str | bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Command.from_json(text)


def test_from_json_accepts_what_go_accepts() -> None:
    # Go leaves a struct value as it is on null; a nil pointer, slice or map is null.
    command = Command.from_json('{"process_config": null, "network": null, "mounts": null, "umask": null,'
                                ' "resources": {"rlimits": null}}')
    assert command.process_config == ProcessConfig() and command.network is None and command.mounts is None
    assert command.resources == Resources()
    # The largest values of each Go type.
    command = Command.from_json('{"container_pid": 9223372036854775807, "resources": {"blkio_weight": 65535,'
                                ' "rlimits": [{"type": 15, "hard": 18446744073709551615, "soft": 0}]}}')
    assert command.container_pid == 2**63 - 1
    assert command.resources is not None and command.resources.rlimits == [Rlimit(15, 2**64 - 1, 0)]
    ports = Command.from_json('{"network": {"interface": {"port_bindings": {"80": null, "1-65535/sctp": []}}}}')
    assert ports.network is not None and ports.network.interface is not None
    assert ports.network.interface.port_bindings == {"80": None, "1-65535/sctp": []}


def test_each_struct_parses_alone() -> None:
    assert Mount.from_json('{"source": "/a", "destination": "/b", "writable": true}') == Mount("/a", "/b", True)
    assert Resources.from_json('{"memory": 1}') == Resources(memory=1)
    with pytest.raises(ConfigError, match=r"^Mount: expected an object, got string$"):
        Mount.from_json('"x"')


# --- the other types ------------------------------------------------------------------------


def test_mutable_defaults_are_not_shared() -> None:
    first, second = Hooks(), Hooks()
    first.pre_start.append(lambda process, pid, oom: None)
    assert second.pre_start == [] and second.post_stop == [] and second.start is None
    assert Command().process_config is not Command().process_config
    assert Pipes() == Pipes(None, None, None)


def test_oom_events() -> None:
    events = OOMEvents()
    assert events.count == 0 and not events.is_set() and events.wait(0) is False
    events.notify()
    events.notify()
    assert events.count == 2 and events.is_set() and events.wait(0) is True


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("error", "message"), [
    (errors.NotRunningError, "Container is not running"),
    (errors.WaitTimeoutError, "Wait timeout reached"),
    (errors.DriverAlreadyRegisteredError, "A driver already registered this docker init function"),
    (errors.DriverNotFoundError, "The requested docker init has not been found"),
])
def test_the_reference_sentinels_keep_their_messages(error: type[Exception], message: str) -> None:
    assert str(error()) == message
    assert str(error("other")) == "other"
    assert isinstance(error(), errors.ExecDriverError)


def test_error_hierarchy() -> None:
    expected: dict[type[Exception], tuple[type[BaseException], ...]] = {
        errors.ExecDriverError: (Exception,),
        errors.NotRunningError: (errors.ExecDriverError,),
        errors.WaitTimeoutError: (errors.ExecDriverError, TimeoutError),
        errors.DriverAlreadyRegisteredError: (errors.ExecDriverError,),
        errors.DriverNotFoundError: (errors.ExecDriverError, LookupError),
        errors.ConfigError: (errors.ExecDriverError, ValueError),
        errors.UsageError: (errors.ConfigError,),
        errors.ContainerError: (errors.ExecDriverError,),
        errors.ContainerExistsError: (errors.ContainerError,),
        errors.UnsupportedError: (errors.ExecDriverError,),
        errors.NetworkError: (errors.ContainerError,),
    }
    for error, bases in expected.items():
        assert error.__bases__ == bases, error.__name__
    defined = {value for value in vars(errors).values() if isinstance(value, type) and issubclass(value, Exception)}
    assert defined == set(expected)
    # One class catches all; the sentinels are not each other.
    assert not issubclass(errors.NotRunningError, errors.ContainerError)
    assert not issubclass(errors.ConfigError, errors.ContainerError)


def test_cgroup_and_usage_errors() -> None:
    from execdriver.cli import flags
    from execdriver.linux.cgroups import CgroupError

    error = CgroupError("resources.memory: writing", 13)
    assert isinstance(error, errors.ExecDriverError) and error.errno == 13 and str(error) == "resources.memory: writing"
    assert CgroupError("x").errno == 0
    assert flags.UsageError is errors.UsageError  # the CLI's parser raises the library's


def test_public_names_are_the_same_objects_everywhere() -> None:
    for name in api.__all__:
        assert getattr(execdriver, name) is getattr(api, name), name
    for name in execdriver.__all__:
        assert getattr(execdriver, name) is not None, name
    with pytest.raises(AttributeError):
        execdriver.NoSuchThing  # noqa: B018
