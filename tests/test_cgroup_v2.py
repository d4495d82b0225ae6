"""The cgroup v2 manager, on a cgroup2 mount of our own: it runs on a v1 (hybrid) host too.

Only the controllers the host leaves to cgroup2 can be tried; on this kind
of host memory and cpu are bound to v1, and the test that needs them says so.
"""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from execdriver.linux.cgroups import CgroupError, Limits
from execdriver.linux.cgroups.v2 import V2Manager

MiB = 1024 * 1024


@pytest.fixture()
def cgroup2_root(tmp_path: Path) -> Iterator[Path]:
    """A cgroup2 mount of our own, and a parent cgroup of ours inside it."""
    mount_point = tmp_path / "cgroup2"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "cgroup2", "none", str(mount_point)], check=True)
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


@pytest.mark.skipif("memory" not in Path("/sys/fs/cgroup/unified/cgroup.controllers").read_text().split()
                    if Path("/sys/fs/cgroup/unified/cgroup.controllers").exists() else True,
                    reason="the cgroup2 memory and cpu controllers are bound to cgroup v1 on this host, "
                           "so v2 memory.max and cpu.max cannot be applied here")
def test_v2_memory_and_cpu_limits(cgroup2_root: Path) -> None:
    manager = V2Manager("box", str(cgroup2_root))
    manager.create(Limits(memory=64 * MiB, cpu_quota=50000, cpu_period=100000))
    try:
        assert (cgroup2_root / "box/memory.max").read_text().strip() == str(64 * MiB)
        assert (cgroup2_root / "box/cpu.max").read_text().strip() == "50000 100000"
    finally:
        manager.destroy()
