"""The warm pool: containers made ahead but for their process, handed out by run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from execdriver import Command, ConfigError, Hooks, Network, NetworkInterface, OOMEvents, ProcessConfig
from execdriver.linux import cgroups, process
from execdriver.native.driver import NativeDriver
from tests.helpers import run, shell


def _idle_pids(driver: NativeDriver) -> set[int]:
    """The pids of the pool's idle sandboxes (the driver's own bookkeeping)."""
    pool = driver._pool
    assert pool is not None
    return {sandbox.pid for sandboxes in pool._idle.values() for sandbox in sandboxes}


def _pool_leftovers(state_root: Path) -> list[str]:
    found = [str(p) for p in (state_root / ".pool").glob("*")] if (state_root / ".pool").exists() else []
    for hierarchy in [Path("/sys/fs/cgroup"), *Path("/sys/fs/cgroup").iterdir()]:  # v2's root, v1's hierarchies
        found += [str(p) for p in (hierarchy / "execdriver").glob("pool-*")]
    return found


def test_run_takes_a_sandbox_made_ahead(driver: NativeDriver, busybox_rootfs: Path, state_root: Path,
                                        cid: str) -> None:
    template = shell("template", busybox_rootfs, "true")
    driver.warm(template, 2)
    made_ahead = _idle_pids(driver)
    assert len(made_ahead) == 2
    pids: list[int] = []

    def on_pre_start(_config: ProcessConfig, pid: int, _oom: OOMEvents) -> None:
        pids.append(pid)

    v1 = cgroups.version() == 1
    script = f"echo $(hostname) $(id -u) $(grep {'freezer' if v1 else '^0::'} /proc/self/cgroup); echo err >&2; exit 7"
    for index, user in enumerate(("", "nobody")):
        command = shell(f"{cid}-{index}", busybox_rootfs, script, hostname=f"warm{index}",
                        process_config=ProcessConfig(entrypoint="sh", arguments=["-c", script], user=user))
        status, out, err = run(driver, command, hooks=Hooks(pre_start=[on_pre_start]))
        assert status.exit_code == 7 and err == "err\n"
        name, uid, cgroup = out.split()
        assert name == f"warm{index}" and uid == ("0" if not user else "65534")
        # The container keeps its sandbox's cgroup, which its state names (launchers.Warm says why).
        assert cgroup.split(":", 2)[2].startswith("/execdriver/pool-")
    # Both inits were the sandboxes made ahead; never the same one twice.
    assert set(pids) == made_ahead
    assert all(not process.is_alive(pid, process.start_time(pid) or -1) for pid in pids)
    driver.warm(template, 0)
    # (Once, in a whole-suite run, two refilled sandboxes were still there: the
    # filler keeps what its discards raise in pool.errors, so a repeat says why.)
    assert driver._pool is not None and driver._pool.errors == []
    assert _pool_leftovers(state_root) == []


def test_another_shape_starts_cold_and_the_pool_refills(driver: NativeDriver, busybox_rootfs: Path,
                                                        rootfs: Path, state_root: Path, cid: str) -> None:
    driver.warm(shell("template", busybox_rootfs, "true"), 1)
    used: list[bool] = []

    def recorder(idle: set[int]) -> Hooks:
        def on_pre_start(_config: ProcessConfig, pid: int, _oom: OOMEvents) -> None:
            used.append(pid in idle)
        return Hooks(pre_start=[on_pre_start])

    run(driver, shell(cid, rootfs, "true"), hooks=recorder(_idle_pids(driver)))  # another rootfs
    run(driver, shell(f"{cid}-b", busybox_rootfs, "true", readonly_rootfs=True),  # another root mode
        hooks=recorder(_idle_pids(driver)))
    assert used == [False, False]
    for index in range(3):  # each takes the sandbox the pool made after the previous one
        deadline = time.monotonic() + 10
        while not _idle_pids(driver):
            assert time.monotonic() < deadline, "the pool did not refill"
            time.sleep(0.01)
        run(driver, shell(f"{cid}-{index}", busybox_rootfs, "true"), hooks=recorder(_idle_pids(driver)))
    assert used[2:] == [True, True, True]
    driver.close()
    assert _pool_leftovers(state_root) == []


def test_a_template_that_cannot_be_made_ahead(driver: NativeDriver, busybox_rootfs: Path) -> None:
    template = shell("template", busybox_rootfs, "true", network=Network(interface=NetworkInterface()))
    with pytest.raises(ConfigError, match="warm: this template cannot be made ahead"):
        driver.warm(template, 1)
    with pytest.raises(ConfigError, match=r"rootfs: .* does not exist"):
        driver.warm(Command(id="t", rootfs="/nonexistent", process_config=ProcessConfig(entrypoint="true")), 1)


def test_a_sandbox_killed_while_it_waits_is_never_handed_out(driver: NativeDriver, busybox_rootfs: Path,
                                                             state_root: Path, cid: str) -> None:
    import os
    import signal

    template = shell("template", busybox_rootfs, "true")
    driver.warm(template, 1)
    (victim,) = _idle_pids(driver)
    os.kill(victim, signal.SIGKILL)
    time.sleep(0.2)
    status, out, _ = run(driver, shell(cid, busybox_rootfs, "echo ran"))
    assert status.exit_code == 0 and out == "ran\n"  # a sandbox made anew, or a cold start: never the dead one
    driver.warm(template, 0)
    assert _pool_leftovers(state_root) == []


def _own_pages(pid: int, ranges: bytes) -> tuple[int, int]:
    """(pages of ``ranges`` that process ``pid`` holds alone, pages in all)."""
    pairs = memoryview(ranges).cast("Q")
    own = total = 0
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for start, length in zip(pairs[::2], pairs[1::2], strict=True):
            pagemap.seek((start >> 12) * 8)
            for entry in memoryview(pagemap.read((length >> 12) * 8)).cast("Q"):
                total += 1
                own += bool(entry >> 63 and entry >> 56 & 1)
    return own, total


def _true(name: str, rootfs: Path, seccomp_profile: str) -> Command:
    return Command(id=name, rootfs=str(rootfs), seccomp_profile=seccomp_profile,
                   process_config=ProcessConfig(entrypoint="true"))


def test_a_pool_learns_what_its_sandboxes_write_after_the_go_and_the_next_write_it_ahead(
        driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    def plain(name: str) -> Command:
        return _true(name, busybox_rootfs, "unconfined")

    driver.warm(plain("template"), 1)
    status, _, _ = run(driver, plain(cid))
    assert status.exit_code == 0
    pool = driver._pool
    assert pool is not None
    learned = list(pool._pages.values())
    assert len(learned) == 1 and learned[0] and len(learned[0]) % 16 == 0
    deadline = time.monotonic() + 10
    while not _idle_pids(driver):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # The sandbox says it is ready before it writes the pages ahead: give it the time
    # (under emulation, the guest's, that takes a while).
    idle = next(iter(_idle_pids(driver)))
    own, total = _own_pages(idle, learned[0])
    while own != total and time.monotonic() < deadline:
        time.sleep(0.01)
        own, total = _own_pages(idle, learned[0])
    assert total > 100 and own == total  # copied while it waited, not after its go
    status, _, _ = run(driver, plain(f"{cid}-2"))
    assert status.exit_code == 0
    driver.warm(plain("template"), 0)


def test_a_pool_whose_filter_might_kill_learns_nothing(driver: NativeDriver, busybox_rootfs: Path,
                                                      cid: str) -> None:
    # A profile of the caller's own: its sandbox loads it ahead, then must make no call of ours.
    def strict(name: str) -> Command:
        return _true(name, busybox_rootfs, '{"defaultAction": "SCMP_ACT_ALLOW"}')

    driver.warm(strict("template"), 1)
    status, _, _ = run(driver, strict(cid))
    assert status.exit_code == 0
    assert driver._pool is not None and driver._pool._pages == {}
    driver.warm(strict("template"), 0)
