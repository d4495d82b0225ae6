"""Bad input: a clear error that names what is wrong, and nothing left behind.

The ``state_root`` fixture checks on teardown that no state directory and
no mount is left; these tests also check that no process survives.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from execdriver import (
    Command,
    ConfigError,
    ContainerError,
    ExecDriverError,
    Mount,
    Network,
    NetworkInterface,
    ProcessConfig,
    Resources,
)
from execdriver.native.driver import NativeDriver
from tests.helpers import run, shell


def container_processes() -> set[int]:
    """Host pids of every process whose pid namespace is not ours: container inits and their children."""
    own = os.stat("/proc/self/ns/pid").st_ino
    found = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}/ns/pid").st_ino != own:
                    found.add(int(name))
            except OSError:
                pass
    return found


@pytest.fixture(autouse=True)
def no_process_left() -> object:
    before = container_processes()
    yield
    assert container_processes() - before == set()


def test_missing_rootfs(driver: NativeDriver, tmp_path: Path, cid: str) -> None:
    with pytest.raises(ConfigError, match=r"rootfs: .*/nope does not exist"):
        run(driver, shell(cid, tmp_path / "nope", "true"))


def test_no_rootfs_at_all(driver: NativeDriver, cid: str) -> None:
    with pytest.raises(ConfigError, match="rootfs: no root filesystem given"):
        run(driver, Command(id=cid, process_config=ProcessConfig(entrypoint="true")))


def test_missing_command(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    command = Command(id=cid, rootfs=str(busybox_rootfs), process_config=ProcessConfig(entrypoint="nosuchcmd"))
    with pytest.raises(ContainerError, match='exec: "nosuchcmd": executable file not found in \\$PATH'):
        run(driver, command)


def test_missing_absolute_command(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    command = Command(id=cid, rootfs=str(busybox_rootfs), process_config=ProcessConfig(entrypoint="/opt/app"))
    with pytest.raises(ContainerError, match=r'exec: "/opt/app": no such file or directory'):
        run(driver, command)


def test_command_that_is_not_executable(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    command = Command(id=cid, rootfs=str(busybox_rootfs),
                      process_config=ProcessConfig(entrypoint="/etc/passwd"))
    with pytest.raises(ContainerError, match="permission denied"):
        run(driver, command)


def test_a_program_the_kernel_cannot_exec(driver: NativeDriver, busybox_rootfs: Path, tmp_path: Path,
                                          cid: str) -> None:
    # It fails in execve itself, after the init has found it, past the point
    # where an init that waits for no go no longer reports it is ready.
    (tmp_path / "bin").mkdir()
    program = tmp_path / "bin" / "garbage"
    program.write_bytes(b"\x00\x01 not an executable format")
    program.chmod(0o755)
    # Over /tmp, which the shared image has: a missing mount point would be made in it.
    command = Command(id=cid, rootfs=str(busybox_rootfs), mounts=[Mount(str(tmp_path / "bin"), "/tmp", False)],
                      process_config=ProcessConfig(entrypoint="/tmp/garbage"))
    with pytest.raises(ContainerError, match=f"container {cid}: Exec format error"):
        run(driver, command)


def test_empty_entrypoint(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    with pytest.raises(ConfigError, match=r"process_config\.entrypoint"):
        run(driver, Command(id=cid, rootfs=str(busybox_rootfs)))


def test_mount_source_missing(driver: NativeDriver, busybox_rootfs: Path, tmp_path: Path, cid: str) -> None:
    mounts = [Mount(str(tmp_path / "absent"), "/data", True)]
    with pytest.raises(ConfigError, match=r"mounts\[0\]\.source: .*absent' does not exist"):
        run(driver, shell(cid, busybox_rootfs, "true", mounts=mounts))


def test_mount_destination_relative(driver: NativeDriver, busybox_rootfs: Path, tmp_path: Path,
                                    cid: str) -> None:
    with pytest.raises(ConfigError, match=r"mounts\[0\]\.destination: 'data' is not an absolute path"):
        run(driver, shell(cid, busybox_rootfs, "true", mounts=[Mount(str(tmp_path), "data", True)]))


def test_mount_point_in_a_read_only_root(driver: NativeDriver, tmp_path: Path, cid: str) -> None:
    # /usr/nowhere would have to be created on the host's read-only /usr.
    command = Command(id=cid, rootfs="/", readonly_rootfs=True,
                      mounts=[Mount(str(tmp_path), "/usr/nowhere", True)],
                      process_config=ProcessConfig(entrypoint="true"))
    with pytest.raises(ContainerError, match="cannot create mount point /usr/nowhere"):
        run(driver, command)
    assert not os.path.exists("/usr/nowhere")


@pytest.mark.parametrize("working_dir", ["relative/dir", "../etc"])
def test_working_dir_outside_the_rootfs(driver: NativeDriver, busybox_rootfs: Path, cid: str,
                                        working_dir: str) -> None:
    with pytest.raises(ConfigError, match=r"working_dir: .* must be an absolute path inside the rootfs"):
        run(driver, shell(cid, busybox_rootfs, "pwd", working_dir=working_dir))


def test_working_dir_through_a_host_descriptor(busybox_rootfs: Path, state_root: Path, cid: str) -> None:
    # CVE-2024-21626: a cwd of /proc/self/fd/N must not reach a host directory.
    # Cloned from this process, the init really holds our descriptor N.
    leak = os.open("/", os.O_RDONLY)
    try:
        with NativeDriver(root=str(state_root), fork_server=False) as direct, pytest.raises(
            ContainerError, match="resolves outside the container's rootfs"
        ):
            run(direct, shell(cid, busybox_rootfs, "pwd; ls", working_dir=f"/proc/self/fd/{leak}"))
    finally:
        os.close(leak)


def test_working_dir_missing_in_a_read_only_root(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    with pytest.raises(ContainerError, match="working directory /no/such/dir"):
        run(driver, shell(cid, busybox_rootfs, "pwd", working_dir="/no/such/dir", readonly_rootfs=True))


def test_unknown_user(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    command = shell(cid, busybox_rootfs, "id",
                    process_config=ProcessConfig(entrypoint="id", user="mallory"))
    with pytest.raises(ContainerError, match="unable to find user mallory"):
        run(driver, command)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"isolation": "hyperv"}, "isolation: 'hyperv' is not available on Linux"),
        ({"hv_partition": True}, "hv_partition: Hyper-V partitions need Windows"),
        ({"process_label": "system_u:system_r:container_t:s0"}, "process_label: SELinux labels need SELinux"),
        ({"resources": Resources(memory=1 << 20)}, "resources.memory: the minimum is 6 MiB"),
        ({"resources": Resources(cpu_period=10)}, "resources.cpu_period: must lie between"),
        ({"resources": Resources(cpuset_cpus="zero")}, "resources.cpuset_cpus: 'zero' is not a list"),
        ({"resources": Resources(memory=1 << 26, memory_swap=1 << 25)}, "resources.memory_swap: must be at least"),
        ({"cgroup_parent": "../escape"}, r"cgroup_parent: '\.\./escape/t-\w+' does not name a cgroup"),
        ({"network": Network(interface=NetworkInterface(bridge="br0"), container_id="x")},
         "network: container_id and interface exclude each other"),
        ({"id": "bad/id"}, "id: 'bad/id' is not a valid container id"),
        ({"id": ""}, "id: '' is not a valid container id"),
        ({"hostname": "h" * 65}, "hostname: longer than 64 bytes"),
    ],
)
def test_refused_fields(driver: NativeDriver, busybox_rootfs: Path, cid: str, fields: dict[str, object],
                        message: str) -> None:
    values = {"id": cid, **fields}
    container_id = str(values.pop("id"))
    with pytest.raises(ConfigError, match=message):
        run(driver, shell(container_id, busybox_rootfs, "true", **values))


def test_isolation_process_and_default_run(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    for isolation in ("process", "default", ""):
        status, _, _ = run(driver, shell(cid, busybox_rootfs, "true", isolation=isolation))
        assert status.exit_code == 0


def test_errors_share_one_base(driver: NativeDriver, tmp_path: Path, cid: str) -> None:
    with pytest.raises(ExecDriverError):
        run(driver, shell(cid, tmp_path / "nope", "true"))


def test_a_limit_the_host_cannot_apply(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    # This host's blkio controller may have no weight file (no CFQ or BFQ
    # weights): then the limit is refused, not dropped, and nothing stays.
    from execdriver.linux.cgroups.v1 import hierarchies

    blkio = hierarchies().get("blkio", "")
    command = shell(cid, busybox_rootfs, "cat /proc/self/cgroup", resources=Resources(blkio_weight=500))
    if os.path.exists(os.path.join(blkio, "blkio.weight")):
        status, _, _ = run(driver, command)  # the host can: the container runs
        assert status.exit_code == 0
        return
    with pytest.raises(ExecDriverError, match=r"resources\.blkio_weight: this host's cgroups have no blkio\.weight"):
        run(driver, command)
    assert not os.path.exists(os.path.join(blkio, "execdriver", cid))
