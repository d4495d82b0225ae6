"""The cgroup v2 manager, on a cgroup2 mount of our own: it runs on a v1 (hybrid) host too.

Only the controllers the host leaves to cgroup2 can be tried; on this kind
of host memory and cpu are bound to v1, and the test that needs them says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from execdriver.linux.cgroups import CgroupError, Limits
from execdriver.linux.cgroups.v2 import V2Manager
from tests.helpers import openable_block_device

MiB = 1024 * 1024


@pytest.fixture()
def cgroup2_root(tmp_path: Path) -> Iterator[Path]:
    """A cgroup2 mount of our own, and a parent cgroup of ours inside it.

    The parent gets every controller the root has, as the runtime's own
    parent does (on a v2 host systemd enables only some at the root).
    """
    mount_point = tmp_path / "cgroup2"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "cgroup2", "none", str(mount_point)], check=True)
    offered = (mount_point / "cgroup.controllers").read_text().split()
    if offered:
        (mount_point / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in offered))
    parent = mount_point / f"execdriver-test-{uuid.uuid4().hex[:8]}"
    parent.mkdir()
    try:
        yield parent
    finally:
        for directory in sorted((p for p in parent.rglob("*") if p.is_dir()), key=lambda p: -len(str(p))):
            directory.rmdir()
        parent.rmdir()
        subprocess.run(["umount", str(mount_point)], check=True)


def test_v2_freezer_process_list_and_kill(cgroup2_root: Path) -> None:
    manager = V2Manager("box/one", str(cgroup2_root))
    manager.create(Limits())
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        manager.add(sleeper.pid)
        assert manager.pids() == [sleeper.pid]
        manager.freeze()
        assert manager.frozen() and "frozen 1" in (cgroup2_root / "box/one/cgroup.events").read_text()
        manager.thaw()
        assert not manager.frozen()
        manager.kill()
        assert sleeper.wait(10) == -signal.SIGKILL
        assert manager.pids() == []
        manager.destroy(parent_levels=1)
        assert not (cgroup2_root / "box").exists()
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()


def test_v2_limits_without_their_controller_are_refused(cgroup2_root: Path) -> None:
    available = (cgroup2_root / "cgroup.controllers").read_text().split()
    if "memory" in available:
        pytest.skip("this host delegates the memory controller to cgroup2: the limit would apply")
    manager = V2Manager("box", str(cgroup2_root))
    with pytest.raises(CgroupError, match="offers no memory controller"):
        manager.create(Limits(memory=64 * MiB))
    assert not (cgroup2_root / "box").exists()


def test_v2_memory_and_cpu_limits(cgroup2_root: Path) -> None:
    if not {"memory", "cpu"} <= set((cgroup2_root / "cgroup.controllers").read_text().split()):
        pytest.skip("the cgroup2 memory and cpu controllers are bound to cgroup v1 on this host, "
                    "so v2 memory.max and cpu.max cannot be applied here (the v2 guest runs this)")
    manager = V2Manager("box", str(cgroup2_root))
    manager.create(Limits(memory=64 * MiB, cpu_quota=50000, cpu_period=100000))
    try:
        assert (cgroup2_root / "box/memory.max").read_text().strip() == str(64 * MiB)
        assert (cgroup2_root / "box/cpu.max").read_text().strip() == "50000 100000"
    finally:
        manager.destroy()


# -- device control: an eBPF program on the cgroup ----------------------------------------------
# The kernel asks a process's cgroup v2 programs on every host, hybrid ones too: these run here.

_TRY_DEVICES = """
import os, sys
with open(sys.argv[1] + "/cgroup.procs", "w") as procs:
    procs.write("0")
for path, flags in (("/dev/null", os.O_RDWR), ("/dev/zero", os.O_RDONLY), (sys.argv[2], os.O_RDONLY)):
    try:
        os.close(os.open(path, flags))
        print(path, "ok")
    except OSError as err:
        print(path, err.errno)
try:
    os.mknod(sys.argv[2] + "-made", 0o600 | 0o060000, os.stat(sys.argv[2]).st_rdev)
    os.unlink(sys.argv[2] + "-made")
    print("mknod ok")
except OSError as err:
    print("mknod", err.errno)
"""


def _try_devices(cgroup: Path, disk_node: Path) -> list[str]:
    """What a process moved into ``cgroup`` may open: /dev/null, /dev/zero, a node of the host's disk; mknod."""
    import sys

    result = subprocess.run([sys.executable, "-c", _TRY_DEVICES, str(cgroup), str(disk_node)],
                            capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.splitlines()


@pytest.fixture()
def disk_node(tmp_path: Path) -> Path:
    """A node, made on the host, of a block device that the host's root can open."""
    node = tmp_path / "disk"
    os.mknod(node, 0o600 | 0o060000, os.makedev(*openable_block_device()))
    return node


def test_v2_device_rules_refuse_the_hosts_disk(cgroup2_root: Path, disk_node: Path) -> None:
    from errno import EPERM

    from execdriver.linux.devices import device_rules

    open_door = V2Manager("open", str(cgroup2_root))
    open_door.create(Limits())  # no rules, no program: the control, where the attack works
    closed = V2Manager("closed", str(cgroup2_root))
    closed.create(Limits(device_rules=device_rules([("deny", "a")])))
    try:
        assert _try_devices(cgroup2_root / "open", disk_node) == [
            "/dev/null ok", "/dev/zero ok", f"{disk_node} ok", "mknod ok"]
        # The standard nodes open; mknod of any node is allowed (as runc's); the disk's node does not open.
        assert _try_devices(cgroup2_root / "closed", disk_node) == [
            "/dev/null ok", "/dev/zero ok", f"{disk_node} {EPERM}", "mknod ok"]
    finally:
        open_door.destroy()
        closed.destroy()


@pytest.mark.parametrize(("rules", "expected"), [
    # The last rule that matches decides, over a default deny, as v1's files and runc's programs decide.
    ([("allow", "a")], ["ok", "ok", "ok", "ok"]),
    ([("deny", "a")], ["EPERM", "EPERM", "EPERM", "EPERM"]),
    ([("allow", "a"), ("deny", "c 1:5 rwm")], ["ok", "EPERM", "ok", "ok"]),
    ([("allow", "c 1:3 r"), ("allow", "c 1:5 rwm")], ["EPERM", "ok", "EPERM", "EPERM"]),  # r alone: no rw open
    ([("allow", "c 1:* rw"), ("deny", "c 1:5 w")], ["ok", "ok", "EPERM", "EPERM"]),
    ([("allow", "b *:* rwm"), ("allow", "c *:3 rw")], ["ok", "EPERM", "ok", "ok"]),
])
def test_v2_device_rules_decide_as_v1s(cgroup2_root: Path, disk_node: Path, rules: list[tuple[str, str]],
                                       expected: list[str]) -> None:
    from errno import EPERM

    manager = V2Manager("rules", str(cgroup2_root))
    manager.create(Limits(device_rules=rules))
    try:
        got = [line.split()[-1] for line in _try_devices(cgroup2_root / "rules", disk_node)]
        assert got == [word.replace("EPERM", str(EPERM)) for word in expected]
    finally:
        manager.destroy()


def test_v2_every_controller_reaches_a_container_without_limits(cgroup2_root: Path) -> None:
    # As runc and crun: so that a container's stats (memory, pids, io) never read zero for want of files.
    offered = (cgroup2_root / "cgroup.controllers").read_text().split()
    manager = V2Manager("box/one", str(cgroup2_root))
    manager.create(Limits())
    try:
        assert (cgroup2_root / "box/one/cgroup.controllers").read_text().split() == offered
        for controller in offered:
            assert any(name.startswith(controller + ".") for name in os.listdir(cgroup2_root / "box/one"))
    finally:
        manager.destroy(parent_levels=1)
