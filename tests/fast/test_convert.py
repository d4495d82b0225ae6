"""The two converters into the launch spec, its one validation pass, and its wire form.

native/command.py (a Command), oci/config.py (config.json), spec.validate,
and what crosses to the fork server and the init (spec.wire, protocol.py),
all without a container. Run as root (the CI's root tier) or as any user
(the fast tier): where the two differ (a user without privileges is root
only in a user namespace of its own, and gets no cgroup on this kind of
host), each test says what each should get.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from execdriver.api import Command, IDMap, Mount, ProcessConfig, Resources, Rlimit
from execdriver.errors import ConfigError, UsageError
from execdriver.linux import RLIMITS, capabilities, syscalls
from execdriver.linux.cgroups import Limits
from execdriver.linux.devices import DEFAULT_DEVICE_RULES, DEFAULT_DEVICES, Device
from execdriver.linux.filesystem import MASKED_PATHS, READONLY_PATHS, default_mounts
from execdriver.native import command as from_command
from execdriver.native import pool, protocol, spawn
from execdriver.native.spec import (
    CLONE_FLAGS,
    DEFAULT_PATH,
    Cgroup,
    ExecSpec,
    LaunchSpec,
    Namespaces,
    Process,
    Security,
    validate,
)
from execdriver.oci import config as oci_config
from execdriver.oci import process as oci_process

pytestmark = pytest.mark.fast

ROOT = os.geteuid() == 0


@pytest.fixture()
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    return root


@pytest.fixture()
def state_dir(tmp_path: Path) -> str:
    (tmp_path / "state").mkdir()
    return str(tmp_path / "state" / "c1")


def _command(rootfs: Path, **fields: Any) -> Command:
    config = fields.pop("process_config", ProcessConfig(entrypoint="sh", arguments=["-c", "true"]))
    return Command(id="c1", rootfs=str(rootfs), process_config=config, **fields)


def _build(command: Command, state_dir: str) -> LaunchSpec:
    return from_command.build(command, state_dir)


# -- the API's converter ---------------------------------------------------------------


def test_a_command_becomes_one_typed_spec(rootfs: Path, state_dir: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    command = _command(rootfs, hostname="box", working_dir="/srv/../work", readonly_rootfs=True,
                       mounts=[Mount(str(data), "/data", False)],
                       process_config=ProcessConfig(entrypoint="echo", arguments=["hi"], env=["A=1"], user="7:8"))
    spec = _build(command, state_dir)
    assert (spec.id, spec.state_dir, spec.rootfs) == ("c1", state_dir, str(rootfs))
    assert spec.process.argv == ["echo", "hi"]
    assert spec.process.env == [f"PATH={DEFAULT_PATH}", "A=1", "HOSTNAME=box"]
    assert (spec.process.user, spec.process.cwd) == ("7:8", "/work")
    assert spec.namespaces.hostname == "box"
    fs = spec.filesystem
    assert (fs.root.kind, fs.root.path, fs.mountpoint, fs.readonly) == ("dir", str(rootfs), state_dir, True)
    assert fs.mounts[:6] == default_mounts()
    bind = fs.mounts[-1]
    assert (bind.destination, bind.source, bind.is_bind, bind.remount & syscalls.MS_RDONLY) == (
        "/data", str(data), True, syscalls.MS_RDONLY)
    assert fs.devices == list(DEFAULT_DEVICES)
    assert (fs.masked_paths, fs.readonly_paths) == (list(MASKED_PATHS), list(READONLY_PATHS))
    assert spec.pdeathsig is True and spec.network is None
    # Docker's default capabilities and profile: a program compiled here, the init only loads it.
    assert spec.security.seccomp_bpf and spec.security.seccomp_lenient
    assert spec.security.umask == 0o022 and spec.security.oom_score_adj is None


def test_the_callers_privileges_decide_the_user_namespace_and_the_cgroup(rootfs: Path, state_dir: str) -> None:
    spec = _build(_command(rootfs), state_dir)
    if ROOT:
        assert spec.namespaces.clone_flags == CLONE_FLAGS and not spec.namespaces.uid_mappings
        assert spec.cgroup.path == "execdriver/c1" and spec.cgroup.parent_levels == 1
        assert spec.cgroup.limits.device_rules == list(DEFAULT_DEVICE_RULES)
    else:  # rootless: its own ids are the container's root, the clone flags say so too
        assert spec.namespaces.clone_flags == CLONE_FLAGS | syscalls.CLONE_NEWUSER
        assert spec.namespaces.uid_mappings == [(0, os.geteuid(), 1)]
        assert spec.namespaces.gid_mappings == [(0, os.getegid(), 1)]
        assert spec.cgroup.limits.device_rules == []  # a user loads no device program


def test_resources_become_limits_and_rlimits(rootfs: Path, state_dir: str) -> None:
    resources = Resources(memory=64 << 20, cpu_shares=512, pids_limit=30,
                          rlimits=[Rlimit(type=RLIMITS["nofile"], soft=100, hard=200)])
    command = _command(rootfs, resources=resources)
    if not ROOT:
        with pytest.raises(ConfigError, match=r"resources\.memory: limits need a cgroup"):
            _build(command, state_dir)
        return
    spec = _build(command, state_dir)
    assert spec.cgroup.limits.wire() == {"memory": 64 << 20, "cpu_shares": 512, "pids_limit": 30,
                                         "device_rules": list(DEFAULT_DEVICE_RULES)}
    assert spec.security.rlimits == [(7, 100, 200)]


def test_privileged_keeps_every_capability_and_no_filter(rootfs: Path, state_dir: str) -> None:
    spec = _build(_command(rootfs, process_config=ProcessConfig(entrypoint="sh", privileged=True)), state_dir)
    assert spec.security.seccomp_bpf is None
    assert spec.security.capabilities == capabilities.available()
    assert (spec.filesystem.masked_paths, spec.filesystem.readonly_paths) == ([], [])
    if ROOT:
        assert spec.cgroup.limits.device_rules == [("allow", "a")]


def test_the_host_view_gets_fresh_tmp_and_run(state_dir: str) -> None:
    spec = from_command.launch_spec(container_id="c1", state_dir=state_dir, argv=["true"], rootfs="/",
                                    readonly=True)
    assert spec.filesystem.root.kind == "host"
    names = [name for name, _ in spec.filesystem.root.entries]
    assert "proc" not in names and "tmp" not in names and "usr" in names
    assert [m.destination for m in spec.filesystem.mounts[6:]] == ["/tmp", "/run"]


def test_init_runs_the_process_under_tini(rootfs: Path, state_dir: str) -> None:
    if not os.access(from_command.INIT_BINARY, os.X_OK):
        with pytest.raises(ConfigError, match=r"init: .* is missing"):
            _build(_command(rootfs, init=True), state_dir)
        return
    spec = _build(_command(rootfs, init=True), state_dir)
    assert spec.process.argv == ["/dev/init", "--", "sh", "-c", "true"]
    assert spec.filesystem.init_binary == from_command.INIT_BINARY


def test_a_terminal_asks_for_a_pty_over_stdin(rootfs: Path, state_dir: str) -> None:
    spec = _build(_command(rootfs, process_config=ProcessConfig(entrypoint="sh", tty=True, console_size=(24, 80))),
                  state_dir)
    assert (spec.process.terminal, spec.process.console_socket, spec.process.console_size) == (True, 0, (24, 80))
    with pytest.raises(ConfigError, match="console_size"):
        _build(_command(rootfs, process_config=ProcessConfig(entrypoint="sh", tty=True, console_size=(-1, 80))),
               state_dir)


@pytest.mark.parametrize(("fields", "refusal"), [
    ({"process_config": ProcessConfig(entrypoint="")}, r"process_config\.entrypoint: no command"),
    ({"process_config": ProcessConfig(entrypoint="a\0b")}, "NUL byte"),
    ({"working_dir": "relative"}, r"working_dir: 'relative' must be an absolute path"),
    ({"hostname": "h" * 65}, "hostname: longer than 64 bytes"),
    ({"isolation": "hyperv"}, "isolation: 'hyperv' is not available on Linux"),
    ({"hv_partition": True}, "hv_partition"),
    ({"mounts": [Mount("/nonexistent-source", "/data", True)]}, r"mounts\[0\]\.source"),
    ({"mounts": [Mount("/", "data", True)]}, r"mounts\[0\]\.destination: 'data' is not an absolute path"),
    ({"mounts": [Mount("/", "/", True)]}, r"mounts\[0\]\.destination: cannot mount over"),
    ({"masked_paths": ["relative"]}, r"masked_paths\[0\]: 'relative' is not an absolute path"),
    ({"cap_add": ["CAP_FLY"]}, "CAP_FLY"),
    ({"process_config": ProcessConfig(entrypoint="sh", env=["NOEQUALS"])}, r"process_config\.env\[0\]"),
    ({"resources": Resources(rlimits=[Rlimit(type=7, soft=10, hard=5)])}, r"rlimits\[0\]: soft 10 is above hard 5"),
    ({"uid_mapping": [IDMap(1, 100000, 10)], "gid_mapping": [IDMap(0, 100000, 10)]}, "must be mapped"),
    ({"rootfs": "", "layer_paths": None}, "rootfs: no root filesystem given"),
], ids=lambda value: str(value)[:40])
def test_the_api_converter_refuses_naming_the_field(rootfs: Path, state_dir: str, fields: dict[str, Any],
                                                     refusal: str) -> None:
    command = _command(rootfs)
    for name, value in fields.items():
        setattr(command, name, value)
    with pytest.raises(ConfigError, match=refusal):
        _build(command, state_dir)


def test_a_missing_rootfs_is_named(tmp_path: Path, state_dir: str) -> None:
    with pytest.raises(ConfigError, match=r"rootfs: .*/nope does not exist"):
        _build(_command(tmp_path / "nope"), state_dir)


def test_exec_spec_of_a_process_config(rootfs: Path, state_dir: str) -> None:
    command = _command(rootfs, working_dir="/w", hostname="h")
    spec = from_command.exec_spec(command, ProcessConfig(entrypoint="ls", arguments=["-l"], user="nobody"),
                                  state_dir)
    assert isinstance(spec, ExecSpec)
    assert (spec.id, spec.process.argv, spec.process.cwd, spec.process.user) == ("c1", ["ls", "-l"], "/w", "nobody")
    assert spec.process.env[-1] == "HOSTNAME=h" and spec.security.seccomp_bpf
    with pytest.raises(ConfigError, match="entrypoint"):
        from_command.exec_spec(command, ProcessConfig(entrypoint=""), state_dir)


def test_update_limits_leave_the_devices_alone() -> None:
    limits = from_command.limits_of(Resources(memory=32 << 20, cpu_quota=50000))
    assert limits.wire() == {"memory": 32 << 20, "cpu_quota": 50000}


# -- the one validation pass -------------------------------------------------------------


def _valid(rootfs: Path, state_dir: str) -> LaunchSpec:
    return _build(_command(rootfs), state_dir)


def test_validate_refuses_a_user_namespace_without_its_mappings(rootfs: Path, state_dir: str) -> None:
    spec = _valid(rootfs, state_dir)
    spec.namespaces.clone_flags ^= syscalls.CLONE_NEWUSER  # the inconsistency the old dict allowed
    with pytest.raises(ConfigError, match="a user namespace and its id mappings go together"):
        validate(spec)


def test_validate_refuses_a_user_namespace_without_a_mount_namespace(rootfs: Path, state_dir: str) -> None:
    spec = _valid(rootfs, state_dir)
    spec.namespaces.clone_flags &= ~(syscalls.CLONE_NEWNS | syscalls.CLONE_NEWUSER)
    spec.namespaces.uid_mappings = spec.namespaces.gid_mappings = []  # (a user without privileges gets them)
    validate(spec)  # the runtime's mount namespace, shared (as runc allows)
    spec.namespaces.clone_flags |= syscalls.CLONE_NEWUSER
    spec.namespaces.uid_mappings = spec.namespaces.gid_mappings = [(0, 100000, 1)]
    with pytest.raises(ConfigError, match="a user namespace needs a mount namespace"):
        validate(spec)


def test_validate_refuses_a_network_mode_its_namespaces_contradict(rootfs: Path, state_dir: str) -> None:
    from execdriver.linux.network import Network

    spec = _valid(rootfs, state_dir)
    spec.network = Network("host")  # the host's network, yet a namespace of its own
    with pytest.raises(ConfigError, match="mode host and the network namespace disagree"):
        validate(spec)


def test_validate_checks_the_limits(rootfs: Path, state_dir: str) -> None:
    spec = _valid(rootfs, state_dir)
    spec.cgroup = Cgroup("execdriver/c1", "execdriver/c1", 1, Limits(memory=1024))
    with pytest.raises(ConfigError, match="the minimum is 6 MiB"):
        validate(spec)
    spec.cgroup = Cgroup(limits=Limits(pids_limit=5))  # no cgroup to hold it
    with pytest.raises(ConfigError, match=r"resources\.pids_limit: limits need a cgroup"):
        validate(spec)


# -- the OCI converter --------------------------------------------------------------------


def _bundle(tmp_path: Path, **changes: Any) -> tuple[Path, dict[str, Any]]:
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {"args": ["sh"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0},
                    "capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL"], "permitted": ["CAP_KILL"],
                                     "effective": ["CAP_KILL"]},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}]},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "oci",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=1777"]},
                   {"destination": "/data", "type": "bind", "source": str(tmp_path), "options": ["rbind", "ro"]}],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "mount", "uts", "ipc", "network")],
                  "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"],
                  "sysctl": {"net.ipv4.ip_forward": "1"}, "rootfsPropagation": "rslave"},
    }
    if not ROOT:  # a user without privileges is root only in a user namespace of its own
        config["linux"]["namespaces"].append({"type": "user"})
        config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
        config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    for key, value in changes.items():
        config[key] = value
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle, config


def test_a_config_becomes_the_same_typed_spec(tmp_path: Path, state_dir: str) -> None:
    bundle, _ = _bundle(tmp_path)
    spec = oci_config.launch_spec(oci_config.load(str(bundle)), str(bundle), "c1", state_dir)
    assert spec.process.argv == ["sh"] and spec.process.env == ["PATH=/bin"]  # the config's, untouched
    assert spec.process.user == "0:0" and spec.namespaces.hostname == "oci"
    assert spec.pdeathsig is False  # it outlives the command that created it
    sets = spec.security.capability_sets
    assert sets is not None and sets.bounding == [0, 5] and sets.permitted == [5]
    assert spec.security.capabilities == [0, 5] and spec.security.seccomp_bpf is None  # the bounding set
    assert spec.security.rlimits == [(RLIMITS["nofile"], 1024, 1024)]
    fs = spec.filesystem
    assert fs.root.path == str(bundle / "rootfs") and fs.readonly
    assert [m.destination for m in fs.mounts] == ["/proc", "/tmp", "/data"]
    tmp, data = fs.mounts[1], fs.mounts[2]
    assert (tmp.fstype, tmp.flags, tmp.data) == ("tmpfs", syscalls.MS_NOSUID, "mode=1777")
    assert data.flags == syscalls.MS_BIND | syscalls.MS_REC and data.remount == syscalls.MS_RDONLY
    assert fs.masked_paths == ["/proc/kcore"] and fs.readonly_paths == ["/proc/sys"]
    assert fs.sysctl == [("net.ipv4.ip_forward", "1")]
    assert fs.propagation == syscalls.MS_SLAVE | syscalls.MS_REC
    assert fs.devices == list(DEFAULT_DEVICES)
    if ROOT:
        assert spec.namespaces.clone_flags == CLONE_FLAGS and spec.cgroup.path == "execdriver/c1"
        assert spec.cgroup.limits.device_rules == list(DEFAULT_DEVICE_RULES)
    else:
        assert spec.namespaces.clone_flags == CLONE_FLAGS | syscalls.CLONE_NEWUSER


def test_config_devices_and_resources(tmp_path: Path, state_dir: str) -> None:
    linux = _bundle(tmp_path)[1]["linux"]
    linux["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600}]
    linux["resources"] = {"devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 10,
                                                                          "minor": 229, "access": "rw"}]}
    bundle, _ = _bundle(tmp_path, linux=linux)
    spec = oci_config.launch_spec(oci_config.load(str(bundle)), str(bundle), "c1", state_dir)
    assert spec.filesystem.devices is not None
    assert spec.filesystem.devices[-1] == Device("/dev/fuse", "c", 10, 229, 0o600)
    if ROOT:
        assert spec.cgroup.limits.device_rules[:2] == [("deny", "a"), ("allow", "c 10:229 rw")]


def test_a_config_without_a_process_makes_an_init_that_runs_nothing(tmp_path: Path, state_dir: str) -> None:
    """The runtime spec wants a process only of start (OciRuntime.start refuses one without)."""
    bundle, config = _bundle(tmp_path)
    del config["process"]
    assert oci_config.launch_spec(config, str(bundle), "c1", state_dir).process.argv == []


@pytest.mark.parametrize(("change", "refusal"), [
    ({"root": {"path": ""}}, "root.path: missing"),
    ({"ociVersion": "2.0.0"}, "ociVersion: '2.0.0' is not a 1.x version"),
    ({"process": {"args": [], "cwd": "/"}}, r"process\.args: needs at least the program"),
    ({"process": {"args": ["sh"], "cwd": "rel"}}, r"process\.cwd: 'rel' must be an absolute path"),
    ({"process": {"args": ["sh"], "cwd": "/", "rlimits": [{"type": "RLIMIT_FLY"}]}}, "unknown rlimit 'RLIMIT_FLY'"),
    ({"process": {"args": ["sh"], "cwd": "/", "capabilities": {"bounding": ["CAP_FLY"]}}},
     r"process\.capabilities\.bounding: unknown capability 'CAP_FLY'"),
    ({"process": {"args": ["sh"], "cwd": "/", "user": {"username": "alice"}}}, "only numeric users"),
    ({"mounts": [{"destination": "rel", "type": "tmpfs"}]}, r"mounts\[0\]\.destination: 'rel'"),
    ({"mounts": [{"destination": "/x", "options": ["nosuid"]}]}, r"mounts\[0\]\.type: a mount that is not a bind"),
    ({"mounts": [{"destination": "/x", "type": "bind", "source": "/nonexistent-x"}]}, r"mounts\[0\]\.source"),
    ({"hostname": 5}, "config.hostname: expected str, got int"),
], ids=lambda value: str(value)[:40])
def test_the_oci_converter_refuses_naming_the_field(tmp_path: Path, state_dir: str, change: dict[str, Any],
                                                    refusal: str) -> None:
    bundle, config = _bundle(tmp_path)
    config.update(change)
    if config.get("process") is None:
        del config["process"]
    with pytest.raises(ConfigError, match=refusal):
        oci_config.launch_spec(config, str(bundle), "c1", state_dir) if "ociVersion" not in change else \
            oci_config.load(str(_bundle(tmp_path, **change)[0]))


@pytest.mark.parametrize(("linux", "refusal"), [
    ({"namespaces": [{"type": "mount"}, {"type": "time"}]}, "time namespaces are not supported"),
    ({"namespaces": [{"type": "mount"}, {"type": "nosuch"}]}, "unknown namespace 'nosuch'"),
    ({"namespaces": [{"type": "mount"}, {"type": "user"}]}, "id mappings and a user namespace go together"),
    ({"namespaces": [{"type": "mount"}], "sysctl": {"net.ipv4.ip_forward": "1"}},
     r"linux\.sysctl\.net\.ipv4\.ip_forward: needs a network namespace"),
    ({"namespaces": [{"type": "mount"}, {"type": "network"}], "sysctl": {"vm.swappiness": "1"}}, "not namespaced"),
    ({"namespaces": [{"type": "mount"}], "resources": {"memory": {"limit": 1024}}}, "minimum is 6 MiB"),
    ({"namespaces": [{"type": "mount"}], "resources": {"rdma": {"x": {}}}}, "rdma controller is not supported"),
], ids=lambda value: str(value)[:40])
def test_the_oci_converter_refuses_what_linux_cannot_be(tmp_path: Path, state_dir: str, linux: dict[str, Any],
                                                        refusal: str) -> None:
    bundle, config = _bundle(tmp_path)
    config["linux"] = linux
    del config["hostname"]
    if ROOT or "user" in str(linux):
        with pytest.raises(ConfigError, match=refusal):
            oci_config.launch_spec(config, str(bundle), "c1", state_dir)
    else:  # a user without privileges is refused first, as runc refuses it
        with pytest.raises(ConfigError, match="rootless container requires user namespaces|" + refusal):
            oci_config.launch_spec(config, str(bundle), "c1", state_dir)


@pytest.mark.skipif(not ROOT, reason="a user without privileges gets no cgroup of its own here")
@pytest.mark.parametrize("path", ["kubepods-pod1.slice:cri-containerd:c1", "relative/c1"])
def test_a_relative_cgroups_path_is_below_the_runtimes_own_cgroup(tmp_path: Path, state_dir: str, path: str) -> None:
    """runc's cgroupfs driver; slice:prefix:name too, which containerd passes when it believes systemd is used."""
    from execdriver.linux import cgroups

    bundle, config = _bundle(tmp_path)
    config["linux"]["cgroupsPath"] = path
    spec = oci_config.launch_spec(config, str(bundle), "c1", state_dir)
    assert spec.cgroup.path.lstrip("./") == f"{cgroups.own_path()}/{path}".strip("/")
    assert type(cgroups.manager(spec.cgroup.path)).__name__ in ("V1Manager", "V2Manager")


def test_a_rootless_config_without_a_user_namespace_is_refused_not_half_mapped(tmp_path: Path,
                                                                              state_dir: str) -> None:
    bundle, config = _bundle(tmp_path)
    config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"] if ns["type"] != "user"]
    config["linux"].pop("uidMappings", None)
    config["linux"].pop("gidMappings", None)
    if ROOT:
        spec = oci_config.launch_spec(config, str(bundle), "c1", state_dir)
        assert not spec.namespaces.uid_mappings and not spec.namespaces.clone_flags & syscalls.CLONE_NEWUSER
    else:
        with pytest.raises(ConfigError, match="rootless container requires user namespaces"):
            oci_config.launch_spec(config, str(bundle), "c1", state_dir)


def test_io_priority_is_read_and_checked(tmp_path: Path, state_dir: str) -> None:
    bundle, config = _bundle(tmp_path)
    config["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 7}
    spec = oci_config.launch_spec(config, str(bundle), "c1", state_dir)
    assert spec.security.io_priority == (3, 7)
    assert Security.from_wire(spec.security.wire()).io_priority == (3, 7)
    assert oci_process.exec_spec("c1", config["process"], config, b"").security.io_priority == (3, 7)
    config["process"].pop("ioPriority")
    assert oci_config.launch_spec(config, str(bundle), "c1", state_dir).security.io_priority is None
    for priority, refusal in (({"class": "IOPRIO_CLASS_NONE"}, r"process\.ioPriority\.class: 'IOPRIO_CLASS_NONE'"),
                              ({"class": "IOPRIO_CLASS_BE", "priority": 8}, r"priority: 8 is not a level"),
                              ({"class": "IOPRIO_CLASS_BE", "priority": "1"}, r"priority: expected int")):
        config["process"]["ioPriority"] = priority
        with pytest.raises(ConfigError, match=refusal):
            oci_config.launch_spec(config, str(bundle), "c1", state_dir)


def test_oci_exec_spec_keeps_the_containers_program(tmp_path: Path) -> None:
    _, config = _bundle(tmp_path)
    spec = oci_process.exec_spec("c1", config["process"], config, b"program")
    assert spec.security.seccomp_bpf == b"program" and spec.process.argv == ["sh"]
    assert oci_process.exec_spec("c1", config["process"], config, b"").security.seccomp_bpf is None


def test_exec_options_change_the_kept_process() -> None:
    from execdriver.oci.runtime import ExecOptions, process_with

    base = {"args": ["sh"], "env": ["A=1", "B=2"], "cwd": "/", "capabilities": {"bounding": ["CAP_KILL"]}}
    process = process_with(base, ExecOptions(["ls"], env=["B=3"], user="5:6", cwd="/w", cap=["CAP_CHOWN"],
                                             no_new_privs=True, tty=True))
    assert process["args"] == ["ls"] and process["env"] == ["A=1", "B=3"] and process["cwd"] == "/w"
    assert process["user"] == {"uid": 5, "gid": 6} and process["terminal"] and process["noNewPrivileges"]
    assert process["capabilities"]["bounding"] == ["CAP_KILL", "CAP_CHOWN"]
    assert base["capabilities"] == {"bounding": ["CAP_KILL"]}  # the kept one is not changed
    with pytest.raises(UsageError, match="must be UID"):
        process_with(base, ExecOptions(["ls"], user="alice"))


# -- the wire form and the protocol -----------------------------------------------------


def test_the_spec_crosses_marshal_and_comes_back_equal(rootfs: Path, state_dir: str, tmp_path: Path) -> None:
    bundle, _ = _bundle(tmp_path)
    api = _valid(rootfs, state_dir)
    oci = oci_config.launch_spec(oci_config.load(str(bundle)), str(bundle), "c2", state_dir)
    # runc's placement for the command line's containers; the API's stay out of a hybrid's v2 hierarchy.
    assert (api.cgroup.unified, oci.cgroup.unified) == (False, True)
    for spec in (api, oci):
        mode = protocol.Mode(exec_fifo="/x/exec.fifo")
        request = protocol.Request(spec, mode)
        decoded_spec, decoded_mode = protocol.decode_init(request.encode())
        # The child gets all but the runtime's own parts, which the fork server keeps.
        assert decoded_spec.wire() == spec.child_wire()
        assert decoded_spec.wire()[:7] == spec.wire()[:7] and decoded_spec.network is None
        assert decoded_spec.cgroup.join == spec.cgroup.join and not decoded_spec.cgroup.limits.wire()
        assert LaunchSpec.from_wire(spec.wire()).wire() == spec.wire()
        assert request.kept() == (spec.state_dir, spec.cgroup.path, spec.cgroup.parent_levels, "", "",
                                  spec.cgroup.unified)
        assert decoded_mode.wire() == mode.wire() and decoded_mode.says_ready()
    execute = ExecSpec("c1", Process(["ls"], ["A=1"]), Security([0, 1], 40), (123, 456), ["/sys/fs/cgroup/x/tasks"])
    decoded = protocol.decode(protocol.Request(execute).encode())
    assert isinstance(decoded.spec, ExecSpec) and decoded.spec.wire() == execute.wire()


def test_the_fork_server_frame_leads_with_what_a_blank_needs() -> None:
    body = b"\x00body\xff"
    kept = ("/run/x/c1", "execdriver/c1", 1, "token", "", False)
    assert protocol.unframe(protocol.frame(b"1:2:3", ["/root", "/src"], kept, body)) == (
        b"1:2:3", ["/root", "/src"], kept, body)
    assert protocol.unframe(protocol.frame(b"", None, None, body)) == (b"", None, None, body)


def test_a_run_without_hooks_goes_on_unbidden() -> None:
    assert not protocol.Mode(await_go=False).says_ready()
    assert protocol.Mode(await_go=True).says_ready() and protocol.Mode(await_go=False, warm=True).says_ready()


def test_a_handover_carries_the_process() -> None:
    process = Process(["old"], [], "root", "/")
    assert protocol.Handover.apply(protocol.Handover(Process(["new", "x"], ["E=1"], "5", "/w")).encode(), process)
    assert (process.argv, process.env, process.user, process.cwd) == (["new", "x"], ["E=1"], "5", "/w")
    assert not protocol.Handover.apply(b"E nope", process)


def test_a_blank_init_serves_only_a_plain_spec(rootfs: Path, state_dir: str) -> None:
    spec = _valid(rootfs, state_dir)
    request = protocol.Request(spec)
    if spec.namespaces.uid_mappings:
        assert spawn.profile(request) == b""  # its mappings are its own
    else:
        flags, mask, last_cap = spawn.profile(request).split(b":")
        assert int(flags) == CLONE_FLAGS and int(last_cap) == spec.security.last_cap
        assert int(mask) == sum(1 << cap for cap in spec.security.capabilities)
    assert spawn.tree_sources(request) == [str(rootfs)]
    assert spawn.profile(protocol.Request(spec, protocol.Mode(warm=True))) == b""
    assert spawn.profile(protocol.Request(ExecSpec("c1", spec.process, spec.security))) == b""


def test_a_warm_sandbox_serves_containers_that_differ_only_in_names_and_process(rootfs: Path,
                                                                               tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    one = from_command.build(_command(rootfs, hostname="a"), str(tmp_path / "s" / "one"))
    other = _command(rootfs, hostname="b", process_config=ProcessConfig(entrypoint="ls", env=["X=1"], user="1"))
    other.id = "c2"
    two = from_command.build(other, str(tmp_path / "s" / "two"))
    if one.namespaces.uid_mappings:
        assert pool.shape(one) is None  # a user namespace is no sandbox's
        return
    assert pool.shape(one) == pool.shape(two) is not None
    three = from_command.build(_command(rootfs, readonly_rootfs=True), str(tmp_path / "s" / "three"))
    assert pool.shape(three) != pool.shape(one)


def test_namespaces_say_what_the_container_has(rootfs: Path) -> None:
    joined = Namespaces(syscalls.CLONE_NEWPID, join=[("/proc/1/ns/net", syscalls.CLONE_NEWNET)])
    assert joined.has(syscalls.CLONE_NEWNET) and joined.joins(syscalls.CLONE_NEWNET)
    assert joined.has(syscalls.CLONE_NEWPID) and not joined.joins(syscalls.CLONE_NEWPID)
    assert not joined.has(syscalls.CLONE_NEWNS)
