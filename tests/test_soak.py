"""Soak: a thousand containers in a row, then a thousand with networking; nothing grows.

What is counted before and after, in this process and on the host: open
descriptors and resident memory of the API process, mounts, cgroups of the
runtime, network links, zombie children, state directories and leases.
"""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path

import pytest

from execdriver import Command, Network, NetworkInterface, Pipes, ProcessConfig
from execdriver.linux.network import ipam
from execdriver.native.driver import NativeDriver
from tests.test_network import POOL, _leases_of, _our_rules

SOAK = 1000


def _rss_kib() -> int:
    """Resident memory once the garbage (reference cycles not yet collected) is gone: what is kept."""
    gc.collect()
    with open("/proc/self/status", encoding="ascii") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))


def _zombies() -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == b"Z" and int(fields[1]) == os.getpid():
                count += 1
    return count


def _cgroups() -> int:
    return sum(len(list((hierarchy / "execdriver").glob("*"))) for hierarchy in Path("/sys/fs/cgroup").iterdir()
               if (hierarchy / "execdriver").is_dir())


def _veths_settled(timeout: float = 10.0) -> None:
    """Wait until no veth of ours is left: the kernel deletes them with their namespace, off our path.

    A namespace's cleanup runs in a kernel work queue after its last process
    exits, so the last container's host-side veth may outlive its run by a
    moment; one that outlives this wait is a leak.
    """
    deadline = time.monotonic() + timeout
    while any(ipam.is_veth(name) for name in os.listdir("/sys/class/net")) and time.monotonic() < deadline:
        time.sleep(0.01)


def _census(root: Path) -> dict[str, int]:
    _veths_settled()
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        mounts = sum(1 for _ in mountinfo)
    return {
        "fds": len(os.listdir("/proc/self/fd")),
        "mounts": mounts,
        "cgroups": _cgroups(),
        "links": len(os.listdir("/sys/class/net")),
        "zombies": _zombies(),
        "state": len([name for name in os.listdir(root) if not name.startswith(".")]) if root.exists() else 0,
        "leases": len(_leases_of(root)),
    }


@pytest.mark.timeout(600)
@pytest.mark.parametrize("networked", [False, True])
def test_a_thousand_containers_leave_nothing_behind(state_root: Path, busybox_rootfs: Path, networked: bool,
                                                   cid: str) -> None:
    bridge = f"eds{cid[-8:]}"
    network = Network(interface=NetworkInterface(bridge=bridge)) if networked else None
    with NativeDriver(root=str(state_root), subnet_pool=POOL) as driver:
        def one(index: int) -> None:
            command = Command(id=f"{cid}-{index}", rootfs=str(busybox_rootfs), network=network,
                              process_config=ProcessConfig(entrypoint="true"))
            assert driver.run(command, Pipes()).exit_code == 0

        for index in range(20):  # warm up: the fork server, the imports, the caches
            one(index)
        before, rss_before = _census(state_root), _rss_kib()
        for index in range(20, 20 + SOAK):
            one(index)
        after, rss_after = _census(state_root), _rss_kib()
    # Nothing grew. (Something may shrink: the garbage of earlier tests in this process.)
    assert {key: value for key, value in after.items() if value > before[key]} == {}, (before, after)
    assert rss_after - rss_before < 4096, f"the API process grew by {rss_after - rss_before} KiB"
    assert _our_rules() == "" and not os.path.exists(f"/sys/class/net/{bridge}")
