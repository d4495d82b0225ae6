"""Fixtures: a busybox root filesystem, a driver with a private state root, unique ids.

Every test runs real containers as root, but for the fast tier (tests/fast,
marked ``fast``: pure functions), which runs as any user. Each driver gets
a state root of its own under pytest's temporary directory, so the tests
never touch /run/execdriver or each other, and the fixture checks on
teardown that no state and no mount of that root is left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from execdriver.native.driver import NativeDriver


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="containers need root (CAP_SYS_ADMIN for namespaces and mounts)")
        for item in items:
            if item.get_closest_marker("fast") is None:
                item.add_marker(skip)


def _runtime_cgroups() -> set[str]:
    """The cgroups below the runtime's parent, and those at a hierarchy's root named after it.

    The latter take in the parent itself and the namespace cgroups of the
    engines' tests (containerd's cgroupsPath is /<namespace>/<id>; the
    tests' namespaces are execdriver-*).
    """
    base = "/sys/fs/cgroup"
    found: set[str] = set()
    for hierarchy in os.listdir(base) if os.path.isdir(base) else ():
        root = os.path.join(base, hierarchy)
        for name in os.listdir(root) if os.path.isdir(root) else ():
            if "execdriver" in name and os.path.isdir(os.path.join(root, name)):
                found.add(os.path.join(root, name))
        parent = os.path.join(root, "execdriver")
        if os.path.isdir(parent):
            found.update(os.path.join(parent, name) for name in os.listdir(parent)
                         if os.path.isdir(os.path.join(parent, name)))
    return found


@pytest.fixture(scope="session", autouse=True)
def no_cgroup_left_by_the_suite() -> Iterator[None]:
    """Every container cgroup the tests made is gone when they end."""
    if os.geteuid() != 0:  # the fast tier alone: it makes no cgroup
        yield
        return
    before = _runtime_cgroups()
    yield
    assert _runtime_cgroups() - before == set()


@pytest.fixture(scope="session", autouse=True)
def host_network_state_restored() -> Iterator[None]:
    """The host-wide things bridged containers set up: the allocator's directory, IP forwarding.

    The runtime keeps both (as Docker keeps ip_forward on); the suite puts
    back what it found, once no lease or bridge of the allocator is left.
    """
    if os.geteuid() != 0:  # the fast tier alone: no bridge, and ip_forward is not ours to write back
        yield
        return
    from execdriver.linux.network import STATE_DIR

    made = [d for d in (os.path.dirname(STATE_DIR), STATE_DIR) if not os.path.exists(d)]
    with open("/proc/sys/net/ipv4/ip_forward", encoding="ascii") as handle:
        forwarding = handle.read()
    yield
    with open("/proc/sys/net/ipv4/ip_forward", "w", encoding="ascii") as handle:
        handle.write(forwarding)
    if STATE_DIR in made:
        state = os.path.join(STATE_DIR, "state.json")
        if os.path.exists(state):
            with open(state, encoding="utf-8") as handle:
                held = json.load(handle)
            assert not held.get("leases") and not held.get("bridges"), f"the allocator still holds {held}"
        shutil.rmtree(STATE_DIR, ignore_errors=True)
    parent = os.path.dirname(STATE_DIR)
    if parent in made and os.path.isdir(parent) and not os.listdir(parent):
        os.rmdir(parent)


def _host_devices() -> dict[str, tuple[int, int, int]]:
    """Mode, device number and inode of the host's standard nodes: no container may touch them."""
    result = {}
    for name in ("null", "zero", "full", "random", "urandom", "tty"):
        info = os.lstat(f"/dev/{name}")
        result[name] = (info.st_mode, info.st_rdev, info.st_ino)
    return result


@pytest.fixture(scope="session", autouse=True)
def host_devices_untouched() -> Iterator[None]:
    if os.geteuid() != 0:  # the fast tier alone: it runs no container
        yield
        return
    before = _host_devices()
    yield
    assert _host_devices() == before


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.images import BUSYBOX, make_busybox_rootfs

    if not os.path.exists(BUSYBOX):
        pytest.fail("busybox is missing: scripts/setup.sh installs busybox-static")
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture()
def rootfs(busybox_rootfs: Path, tmp_path: Path) -> Path:
    """A private copy of the busybox rootfs, for tests that write to it."""
    copy = tmp_path / "rootfs"
    shutil.copytree(busybox_rootfs, copy, symlinks=True, ignore=_special_files)
    return copy


def _special_files(directory: str, names: list[str]) -> list[str]:
    """Device nodes, FIFOs and sockets: never copied (reading /dev/zero or /dev/full never ends)."""
    import stat

    return [name for name in names
            if not stat.S_ISREG(mode := os.lstat(os.path.join(directory, name)).st_mode)
            and not stat.S_ISDIR(mode) and not stat.S_ISLNK(mode)]


@pytest.fixture()
def state_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "state"
    yield root
    # Dot names are the runtime's own (.lock, .stage ...); a driver's kept id directories go with it.
    leftovers = [name for name in os.listdir(root)
                 if not name.startswith(".") or name.startswith(".spare-")] if root.exists() else []
    assert leftovers == [], f"state left behind: {leftovers}"
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        leaked = [line for line in mountinfo if str(root) in line]
    assert leaked == [], f"mounts left behind: {leaked}"


@pytest.fixture()
def driver(state_root: Path) -> Iterator[NativeDriver]:
    # Imported here, not above: the fast tier (tests/fast) runs without the runtime's modules.
    from execdriver.native.driver import NativeDriver

    with NativeDriver(root=str(state_root)) as native:
        yield native


@pytest.fixture()
def cid() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"
