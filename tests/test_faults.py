"""Resource faults: a full filesystem, a memory limit too low, a missing program, a fork server killed."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from execdriver import Command, ContainerError, Mount, Pipes, ProcessConfig, Resources
from execdriver.linux import syscalls
from execdriver.native.driver import NativeDriver
from tests.helpers import run, shell


@pytest.fixture()
def full_rootfs(busybox_rootfs: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the rootfs on a small tmpfs of the test's own, then filled up."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    syscalls.mount("tmpfs", str(mountpoint), "tmpfs", 0, "size=8m,nr_inodes=200")
    try:
        root = mountpoint / "rootfs"
        root.mkdir()
        for name in ("etc", "proc", "sys", "dev", "tmp"):
            (root / name).mkdir()
        (root / "bin").mkdir()
        shutil.copy2(busybox_rootfs / "bin" / "busybox", root / "bin" / "busybox")
        for applet in ("sh", "true", "cat"):
            (root / "bin" / applet).symlink_to("busybox")
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (root / "etc" / "group").write_text("root:x:0:\n")
        with open(mountpoint / "filler", "wb") as filler:  # no block left
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError:
                pass
        try:  # and no inode
            for index in range(1000):
                (mountpoint / f"inode-{index}").touch()
        except OSError:
            pass
        yield root
    finally:
        syscalls.umount2(str(mountpoint), syscalls.MNT_DETACH)


def _nothing_left(driver: NativeDriver, state_root: Path, cid: str) -> None:
    assert driver.list() == []
    assert [name for name in os.listdir(state_root) if not name.startswith(".")] == []
    assert not any((h / "execdriver" / cid).exists() for h in Path("/sys/fs/cgroup").iterdir())


def test_a_rootfs_on_a_full_filesystem(driver: NativeDriver, full_rootfs: Path, state_root: Path, cid: str,
                                       tmp_path: Path) -> None:
    # A mount point the runtime must make in the rootfs cannot be made: a clear error.
    with pytest.raises(ContainerError, match="cannot create mount point /data/new: No space left on device"):
        run(driver, shell(cid, full_rootfs, "true", mounts=[Mount(source=str(tmp_path), destination="/data/new")]))
    _nothing_left(driver, state_root, cid)
    # The container's own writes fail in the container, which is told why.
    status, _, err = run(driver, shell(cid, full_rootfs, "echo data > /tmp/file"))
    assert status.exit_code != 0 and "No space left on device" in err
    _nothing_left(driver, state_root, cid)


def test_a_memory_limit_too_low(driver: NativeDriver, busybox_rootfs: Path, state_root: Path, cid: str) -> None:
    hungry = 'x=$(head -c 40000000 /dev/zero | tr "\\0" a); echo survived'
    status, out, _ = run(driver, shell(cid, busybox_rootfs, hungry,
                                       resources=Resources(memory=8 << 20, memory_swap=8 << 20)))
    assert status.oom_killed and status.exit_code != 0 and "survived" not in out
    _nothing_left(driver, state_root, cid)


def test_a_missing_program(driver: NativeDriver, busybox_rootfs: Path, state_root: Path, cid: str) -> None:
    command = Command(id=cid, rootfs=str(busybox_rootfs), process_config=ProcessConfig(entrypoint="/no/such"))
    with pytest.raises(ContainerError, match='exec: "/no/such": no such file or directory'):
        driver.run(command, Pipes())
    _nothing_left(driver, state_root, cid)


def test_the_fork_server_killed_mid_exec(driver: NativeDriver, busybox_rootfs: Path, state_root: Path,
                                         cid: str) -> None:
    """Its inits die with it (PR_SET_PDEATHSIG): run reports it, clean leaves nothing, the driver recovers."""
    from execdriver import Hooks, OOMEvents
    from tests.test_run import start_in_background

    command = shell(cid, busybox_rootfs, "sleep 30")
    thread, result = start_in_background(driver, command)
    server = driver._spawner._process  # type: ignore[attr-defined]
    assert server is not None

    def kill_server(_config: ProcessConfig, _pid: int, _oom: OOMEvents) -> None:
        os.kill(server.pid, signal.SIGKILL)

    exec_error: list[BaseException] = []
    try:
        driver.exec(command, ProcessConfig(entrypoint="sleep", arguments=["30"]), Pipes(),
                    Hooks(start=kill_server))
    except Exception as err:  # noqa: BLE001 - whatever it is, it is reported
        exec_error.append(err)
    thread.join(20)
    assert not thread.is_alive()
    # Both lose their process with the server, and say so.
    assert "fork server lost container process" in str(result.get("error")), result
    assert len(exec_error) == 1 and "fork server lost container process" in str(exec_error[0]), exec_error
    driver.clean(cid)
    deadline = time.monotonic() + 10
    while [name for name in os.listdir(state_root) if not name.startswith(".")]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    _nothing_left(driver, state_root, cid)
    # The driver starts a new fork server for the next container.
    status, out, _ = run(driver, shell(f"{cid}-b", busybox_rootfs, "echo again"))
    assert status.exit_code == 0 and out == "again\n"
