"""The API types: Go JSON form, validation errors, the four errors, the registry."""

from __future__ import annotations

import json

import pytest

import execdriver
from execdriver import (
    Command,
    ConfigError,
    Driver,
    DriverAlreadyRegisteredError,
    DriverNotFoundError,
    ExecDriverError,
    ExitStatus,
    Mount,
    Network,
    NetworkInterface,
    NotRunningError,
    PortBinding,
    ProcessConfig,
    Resources,
    WaitTimeoutError,
    new_driver,
    register_driver,
)

# What Go's json.Marshal writes for a zero-valued Command of the reference
# (embedded CommonCommand first, nil slices and pointers as null), plus the
# Linux build's readonly_rootfs, cgroup_parent, security fields, privileged and user.
GO_ZERO_COMMAND = (
    '{"container_pid":0,"id":"","mount_label":"","mounts":null,"network":null,'
    '"process_config":{"tty":false,"entrypoint":"","arguments":null,"privileged":false,"user":""},'
    '"process_label":"","resources":null,"rootfs":"","working_dir":"","tmpdir":"",'
    '"first_start":false,"hostname":"","layer_folder":"","layer_paths":null,"isolation":"",'
    '"args_escaped":false,"hv_partition":false,"readonly_rootfs":false,"cgroup_parent":"",'
    '"cap_add":null,"cap_drop":null,"seccomp_profile":"","apparmor_profile":"","no_new_privileges":false,'
    '"oom_score_adj":0,"uidmapping":null,"gidmapping":null,"masked_paths":null,"readonly_paths":null,'
    '"umask":null,"init":false}'
)


def full_command() -> Command:
    return Command(
        container_pid=42,
        id="c1",
        mounts=[Mount("/src", "/dst", True), Mount("/a<b>&c", "/ro", False)],
        network=Network(
            interface=NetworkInterface(
                mac_address="02:42:ac:11:00:02",
                bridge="br0",
                ip_address="172.17.0.2",
                port_bindings={"80/tcp": [PortBinding("", "8080")], "53/udp": [PortBinding("127.0.0.1", "")]},
            ),
            container_id="",
        ),
        process_config=ProcessConfig(tty=True, entrypoint="sh", arguments=["-c", "echo é"], user="1000:50"),
        resources=Resources(memory=1 << 30, memory_reservation=1 << 29, blkio_weight=500),
        rootfs="/rootfs",
        working_dir="/w",
        tmpdir="/tmp/x",
        first_start=True,
        hostname="h",
        layer_folder="/l",
        layer_paths=["/l1", "/l2"],
        isolation="process",
        args_escaped=True,
        hv_partition=False,
    )


def test_zero_command_serialises_like_go() -> None:
    assert Command().to_json() == GO_ZERO_COMMAND


def test_json_uses_the_reference_tags_and_go_escaping() -> None:
    text = full_command().to_json()
    obj = json.loads(text)
    assert obj["network"]["interface"]["mac"] == "02:42:ac:11:00:02"
    assert obj["network"]["interface"]["ip"] == "172.17.0.2"
    assert obj["network"]["interface"]["port_bindings"]["80/tcp"] == [{"HostIp": "", "HostPort": "8080"}]
    assert obj["layer_folder"] == "/l" and obj["layer_paths"] == ["/l1", "/l2"]
    assert obj["container_pid"] == 42 and obj["tmpdir"] == "/tmp/x"
    # Go escapes HTML characters and writes other non-ASCII as UTF-8.
    assert "/a\\u003cb\\u003e\\u0026c" in text and "é" in text
    # Fields tagged "-" in Go stay out.
    assert "console_size" not in text and "env" not in obj["process_config"]
    # Go sorts map keys.
    assert text.index('"53/udp"') < text.index('"80/tcp"')


def test_round_trip_is_exact() -> None:
    command = full_command()
    text = command.to_json()
    again = Command.from_json(text)
    assert again == command
    assert again.to_json() == text
    assert Command.from_json(GO_ZERO_COMMAND).to_json() == GO_ZERO_COMMAND


def test_null_and_empty_lists_both_survive() -> None:
    text = GO_ZERO_COMMAND.replace('"mounts":null', '"mounts":[]')
    assert Command.from_json(text).mounts == []
    assert Command.from_json(text).to_json() == text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"process_config": {"arguments": ["a", 3]}}, "process_config.arguments[1]: expected a string"),
        ({"container_pid": "12"}, "container_pid: expected an integer"),
        ({"container_pid": 1.5}, "container_pid: expected an integer"),
        ({"resources": {"blkio_weight": 70000}}, "resources.blkio_weight: 70000 is out of range"),
        ({"mounts": [{"source": "/a", "writable": "yes"}]}, "mounts[0].writable: expected true or false"),
        ({"mounts": {"source": "/a"}}, "mounts: expected an array"),
        ({"bogus": 1}, "bogus: unknown field"),
        ({"network": {"interface": {"port_bindings": {"http": []}}}}, "network.interface.port_bindings['http']"),
        ({"hv_partition": 0}, "hv_partition: expected true or false"),
    ],
)
def test_invalid_json_names_the_field(change: dict[str, object], message: str) -> None:
    obj = json.loads(GO_ZERO_COMMAND)
    obj.update(change)
    with pytest.raises(ConfigError) as caught:
        Command.from_json(json.dumps(obj))
    assert message in str(caught.value)


def test_malformed_json_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="invalid JSON"):
        Command.from_json("{")
    with pytest.raises(ConfigError, match="expected an object"):
        Command.from_json("[]")


def test_exit_status_json() -> None:
    assert ExitStatus(137).to_json() == '{"ExitCode":137,"OOMKilled":false}'


def test_errors_keep_the_reference_messages() -> None:
    assert str(NotRunningError()) == "Container is not running"
    assert str(WaitTimeoutError()) == "Wait timeout reached"
    assert str(DriverAlreadyRegisteredError()) == "A driver already registered this docker init function"
    assert str(DriverNotFoundError()) == "The requested docker init has not been found"
    for error in (NotRunningError, WaitTimeoutError, DriverAlreadyRegisteredError, DriverNotFoundError):
        assert issubclass(error, ExecDriverError)


def test_registry() -> None:
    with pytest.raises(DriverAlreadyRegisteredError):
        register_driver("native", lambda **options: new_driver("native"))
    with pytest.raises(DriverNotFoundError):
        new_driver("no-such-driver")
    driver = new_driver("native", root="/run/execdriver-test-unused")
    assert isinstance(driver, Driver)
    assert driver.name() == f"native-{execdriver.__version__}"
    assert driver.supports_hooks() is True


def test_every_reference_method_is_abstract() -> None:
    methods = {
        "run", "exec", "kill", "pause", "unpause", "name", "get_pids_for_container",
        "terminate", "clean", "stats", "update", "supports_hooks",
    }
    assert methods <= Driver.__abstractmethods__


def test_std_console_attaches_pipes() -> None:
    import dataclasses
    import io
    import os

    from execdriver import Pipes, StdConsole

    with open(os.devnull, "rb") as real_stdin:
        console = StdConsole(ProcessConfig(), Pipes(stdin=real_stdin, stdout=io.BytesIO(), stderr=None))
        try:
            assert dataclasses.is_dataclass(console)
            stdin, stdout, stderr = console.stdio
            assert stdin == real_stdin.fileno()  # a real descriptor is handed over as it is
            assert stdout not in (stdin, stderr) and os.get_blocking(stdout)  # a pipe for BytesIO
            assert len(console.closers) == 1  # the pipe's read end is ours
            console.resize(24, 80)  # no terminal: nothing to resize
        finally:
            console.close()
        assert console.closers == []
        for fd in (stdout, stderr):
            try:
                os.fstat(fd)
                raise AssertionError(f"descriptor {fd} still open")
            except OSError:
                pass


def test_go_json_matches_json_dumps_with_go_escaping() -> None:
    from execdriver.gojson import go_json, rfc3339nano_now

    value = {"a": [1, -2, 3.5, True, False, None], "s": "é\u2028<tag>&\"\\\n\x01", "n": {"": []}}
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028")):
        expected = expected.replace(char, escape)
    assert go_json(value) == expected
    assert json.loads(go_json(value)) == value
    stamp = rfc3339nano_now()
    assert stamp.endswith("Z") and len(stamp) >= 20 and stamp[10] == "T"


@pytest.mark.parametrize("text", ['{"a":1,"b":[1.5,true,null,"x\\u00e9"]}', "[]", '"s"', "3", ' {"k": {"z": -1e3}} '])
def test_lean_json_loads_agrees_with_json(text: str) -> None:
    from execdriver.gojson import loads

    assert loads(text) == json.loads(text)


@pytest.mark.parametrize("text", ["{", '{"a":1} x', "", "nope"])
def test_lean_json_loads_refuses_what_json_refuses(text: str) -> None:
    from execdriver.gojson import loads

    with pytest.raises(ValueError):
        loads(text)


@pytest.mark.parametrize("value", [{"a": [1, {"b": None, "c": []}, {}], "\u00e9": "\u00fc<", "n": 1.5, "t": True},
                                   [], {}, "x", [[1, [2]]]])
def test_pretty_json_prints_what_json_dumps_indent_2_prints(value: object) -> None:
    from execdriver.gojson import pretty_json

    assert pretty_json(value) == json.dumps(value, indent=2)
