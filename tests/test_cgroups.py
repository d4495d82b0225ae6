"""cgroups: limits, OOM, update, stats, pause, pids, clean, on v1 (this host) and v2 (the guest).

test_cgroup_v2.py has the v2 manager on its own.

Limits are checked twice: in the cgroup files, and by what the container can
do. Memory tests run on the host view (the host's python3), since busybox
has no way to allocate a chosen amount of memory.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from execdriver import (
    Command,
    ExecDriverError,
    Hooks,
    Mount,
    NotRunningError,
    OOMEvents,
    Pipes,
    ProcessConfig,
    Resources,
)
from execdriver.linux import cgroups, process
from execdriver.linux.cgroups.v1 import hierarchies
from execdriver.native.driver import NativeDriver
from tests.helpers import run, shell
from tests.test_run import start_in_background, wait_for

V1 = cgroups.version() == 1
MiB = 1024 * 1024


def roots() -> set[str]:
    """Each v1 hierarchy's mount, or v2's one root."""
    return set(hierarchies().values()) if V1 else {cgroups.ROOT}


def cgroup_file(controller: str, cid: str, name: str, v2_name: str = "") -> Path:
    """The container's ``name`` in the v1 ``controller``'s hierarchy; on v2, ``v2_name`` (or ``name``)."""
    if V1:
        return Path(hierarchies()[controller]) / "execdriver" / cid / name
    return Path(cgroups.ROOT) / "execdriver" / cid / (v2_name or name)


def membership() -> str:
    """A command that prints the container's cgroup line: v1's memory hierarchy, or v2's."""
    return "grep :memory: /proc/self/cgroup" if V1 else "grep ^0:: /proc/self/cgroup"


def placed(proc_cgroup: str, path: str) -> set[str]:
    """The hierarchies (by controller, "name=systemd" or "" for v2) where /proc/PID/cgroup shows ``path``."""
    found = set()
    for line in proc_cgroup.strip().split("\n"):
        _, controllers, where = line.split(":", 2)
        if where == path:
            found.update(controllers.split(","))
    return found


def python(cid: str, code: str, **fields: object) -> Command:
    """A container on the host view running python3 -c CODE."""
    return Command(id=cid, rootfs="/", readonly_rootfs=True,
                   process_config=ProcessConfig(entrypoint="python3", arguments=["-I", "-c", code]),
                   **fields)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def no_cgroup_left(cid: str) -> Iterator[None]:
    yield
    for mount in roots():
        assert not os.path.exists(os.path.join(mount, "execdriver", cid)), f"cgroup left in {mount}"


def test_every_container_is_in_its_cgroup(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    """In every hierarchy: the init cloned afresh, one the fork server cloned ahead (moved in on v2 as
    it builds its rootfs) and an exec'd process (cloned into it on v2: spawn.born_in). On a hybrid
    host, all but its v2 hierarchy, which the API's containers stay out of (parts.place_cgroup)."""
    from execdriver.linux.cgroups.v1 import UNIFIED

    wanted = set(hierarchies()) - {UNIFIED} if V1 else {""}
    hybrid = V1 and UNIFIED in hierarchies()
    assert {"memory", "cpu", "pids", "freezer", "cpuset", "devices", "blkio"} <= wanted or not V1
    for _ in range(2):  # the first clones afresh; the second takes the blank cloned meanwhile
        status, out, _ = run(driver, shell(cid, busybox_rootfs, "cat /proc/self/cgroup"))
        assert status.exit_code == 0 and status.oom_killed is False
        assert placed(out, f"/execdriver/{cid}") >= wanted, out
        assert not hybrid or UNIFIED not in placed(out, f"/execdriver/{cid}"), out
    thread, result = start_in_background(driver, shell(cid, busybox_rootfs, "sleep 60"))
    try:
        out_buffer = io.BytesIO()
        code = driver.exec(Command(id=cid), ProcessConfig(entrypoint="cat", arguments=["/proc/self/cgroup"]),
                           Pipes(stdout=out_buffer))
        assert code == 0
        shown = out_buffer.getvalue().decode()
        assert placed(shown, f"/execdriver/{cid}") >= wanted, shown
        assert not hybrid or UNIFIED not in placed(shown, f"/execdriver/{cid}"), shown
    finally:
        driver.terminate(Command(id=cid))
        thread.join(10)
    assert "error" not in result, result


def test_limits_reach_the_cgroup_files(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    # oom_kill_disable is v1's alone (v2 refuses it, naming the field: test_bad_input.py).
    resources = Resources(memory=64 * MiB, memory_reservation=32 * MiB, memory_swap=96 * MiB, cpu_shares=512,
                          cpu_quota=50000, cpu_period=100000, cpuset_cpus="0", cpuset_mems="0", pids_limit=42,
                          oom_kill_disable=V1)
    files = ((("memory", "memory.limit_in_bytes"), ("memory", "memory.soft_limit_in_bytes"),
              ("memory", "memory.memsw.limit_in_bytes"), ("cpu", "cpu.shares"), ("cpu", "cpu.cfs_quota_us"),
              ("cpu", "cpu.cfs_period_us"), ("cpuset", "cpuset.cpus"), ("pids", "pids.max")) if V1 else
             (("", "memory.max"), ("", "memory.low"), ("", "memory.swap.max"), ("", "cpu.weight"), ("", "cpu.max"),
              ("", "cpuset.cpus"), ("", "pids.max")))
    seen: dict[str, str] = {}

    def read_files(_config: ProcessConfig, _pid: int, _oom: OOMEvents) -> None:
        for controller, name in files:
            seen[name] = cgroup_file(controller, cid, name).read_text().strip()
        if V1:
            seen["oom_kill_disable"] = cgroup_file("memory", cid, "memory.oom_control").read_text().split()[1]

    status, out, _ = run(driver, shell(cid, busybox_rootfs, "nproc", resources=resources),
                         hooks=Hooks(pre_start=[read_files]))
    assert status.exit_code == 0
    assert out.strip() == "1"  # cpuset_cpus "0": one CPU, seen from inside
    assert seen == ({
        "memory.limit_in_bytes": str(64 * MiB), "memory.soft_limit_in_bytes": str(32 * MiB),
        "memory.memsw.limit_in_bytes": str(96 * MiB), "cpu.shares": "512", "cpu.cfs_quota_us": "50000",
        "cpu.cfs_period_us": "100000", "cpuset.cpus": "0", "pids.max": "42", "oom_kill_disable": "1",
    } if V1 else {
        # v2's own units, converted as runc converts them: swap apart from memory, shares to a weight.
        "memory.max": str(64 * MiB), "memory.low": str(32 * MiB), "memory.swap.max": str(32 * MiB),
        "cpu.weight": "20", "cpu.max": "50000 100000", "cpuset.cpus": "0", "pids.max": "42",
    })


def test_allocating_past_the_limit_is_oom_killed(driver: NativeDriver, cid: str) -> None:
    events: list[int] = []

    def after(_config: ProcessConfig, _pid: int, oom: OOMEvents) -> None:
        events.append(oom.count)

    command = python(cid, "b = b'x' * (200 << 20); print('survived')",
                     resources=Resources(memory=48 * MiB, memory_swap=48 * MiB))
    status, out, _ = run(driver, command, hooks=Hooks(post_stop=[after]))
    assert status.exit_code == 137 and status.oom_killed is True
    assert "survived" not in out
    assert events and events[0] >= 1  # the OOM object handed to the hooks fired


def test_page_cache_pressed_against_the_limit_is_no_oom_event(driver: NativeDriver, cid: str,
                                                              tmp_path: Path) -> None:
    """Written files fill the page cache up to the limit, and reclaim keeps it there: no OOM.

    On cgroup v2 every such reclaim changes memory.events ("max") and wakes
    its poll: the OOM object once fired hundreds of times for it.
    """
    counts: list[int] = []

    def after(_config: ProcessConfig, _pid: int, oom: OOMEvents) -> None:
        counts.append(oom.count)

    script = "dd if=/dev/zero of=/data/file bs=1M count=128 2>/dev/null && cat /data/file >/dev/null && echo done"
    command = Command(id=cid, rootfs="/", readonly_rootfs=True,
                      mounts=[Mount(source=str(tmp_path), destination="/data", writable=True)],
                      resources=Resources(memory=32 * MiB, memory_swap=32 * MiB),
                      process_config=ProcessConfig(entrypoint="sh", arguments=["-c", script]))
    try:
        status, out, err = run(driver, command, hooks=Hooks(post_stop=[after]))
    finally:
        (tmp_path / "file").unlink(missing_ok=True)
    assert (status.exit_code, status.oom_killed, out) == (0, False, "done\n"), err
    assert counts == [0]


def test_within_the_limit_nothing_is_killed(driver: NativeDriver, cid: str) -> None:
    command = python(cid, "b = b'x' * (16 << 20); print('fine')",
                     resources=Resources(memory=96 * MiB, memory_swap=96 * MiB))
    status, out, _ = run(driver, command)
    assert (status.exit_code, status.oom_killed, out) == (0, False, "fine\n")


def test_the_pids_limit_makes_fork_fail(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    script = "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done; echo started; kill $(jobs -p)"
    status, out, err = run(driver, shell(cid, busybox_rootfs, script, resources=Resources(pids_limit=4)))
    assert status.exit_code != 0 and "started" not in out
    assert "can't fork: Resource temporarily unavailable" in err
    status, out, _ = run(driver, shell(cid, busybox_rootfs, script, resources=Resources(pids_limit=20)))
    assert status.exit_code == 0 and "started" in out


def running(driver: NativeDriver, cid: str) -> bool:
    try:
        return driver.get_pids_for_container(cid) != []
    except NotRunningError:
        return False


def _cpu_seconds(driver: NativeDriver, cid: str, wall: float) -> float:
    before = driver.stats(cid).cgroup_stats["cpu_stats"]["cpu_usage"]["total_usage"]  # type: ignore[index]
    time.sleep(wall)
    after = driver.stats(cid).cgroup_stats["cpu_stats"]["cpu_usage"]["total_usage"]  # type: ignore[index]
    return float(after - before) / 1e9


def test_cpu_quota_caps_cpu_time_and_stats_see_spinning(driver: NativeDriver, busybox_rootfs: Path,
                                                         cid: str) -> None:
    spin = "while :; do :; done"
    thread, _ = start_in_background(driver, shell(cid, busybox_rootfs, spin,
                                                  resources=Resources(cpu_quota=20000, cpu_period=100000)))
    try:
        capped = _cpu_seconds(driver, cid, 1.0)
        throttled = driver.stats(cid).cgroup_stats["cpu_stats"]["throttling_data"]  # type: ignore[index]
    finally:
        driver.terminate(Command(id=cid))
        thread.join(10)
    other = f"{cid}-free"
    thread, _ = start_in_background(driver, shell(other, busybox_rootfs, spin))
    try:
        free = _cpu_seconds(driver, other, 1.0)
    finally:
        driver.terminate(Command(id=other))
        thread.join(10)
        driver.clean(other)
    assert 0.05 < capped < 0.35, capped  # 20% of one CPU over one second
    assert throttled["throttled_periods"] > 0
    assert free > 0.6, free


def test_update_raises_and_lowers_limits_live(driver: NativeDriver, cid: str) -> None:
    code = "import time; b = b'x' * (40 << 20); print('ready', flush=True); time.sleep(60)"
    command = python(cid, code, resources=Resources(memory=128 * MiB, memory_swap=128 * MiB, pids_limit=50))
    thread, _ = start_in_background(driver, command)
    limit = cgroup_file("memory", cid, "memory.limit_in_bytes", "memory.max")
    try:
        wait_for(lambda: driver.stats(cid).cgroup_stats["memory_stats"]["usage"]["usage"] > 40 * MiB)  # type: ignore[index]
        driver.update(Command(id=cid, resources=Resources(memory=256 * MiB, memory_swap=256 * MiB)))
        assert limit.read_text().strip() == str(256 * MiB)
        driver.update(Command(id=cid, resources=Resources(pids_limit=20)))
        assert cgroup_file("pids", cid, "pids.max").read_text().strip() == "20"
        assert limit.read_text().strip() == str(256 * MiB)  # 0 leaves a limit unchanged
        driver.update(Command(id=cid, resources=Resources(memory=96 * MiB)))
        assert limit.read_text().strip() == str(96 * MiB)
        with pytest.raises(ExecDriverError, match=r"cannot lower the limit .* the old limit stays"):
            driver.update(Command(id=cid, resources=Resources(memory=16 * MiB)))
        assert limit.read_text().strip() == str(96 * MiB)
        assert driver.stats(cid).memory_limit == 96 * MiB
    finally:
        driver.terminate(Command(id=cid))
        thread.join(10)


def test_stats_memory_grows_with_allocation(driver: NativeDriver, cid: str) -> None:
    code = ("import sys, time; sys.stdin.read(1); b = b'x' * (64 << 20); print('grown', flush=True); "
            "time.sleep(60)")
    read_end, write_end = os.pipe()
    result: dict[str, object] = {}

    def target() -> None:
        with os.fdopen(read_end, "rb") as stdin:
            from execdriver import Pipes

            result["status"] = driver.run(python(cid, code), Pipes(stdin=stdin))

    thread = threading.Thread(target=target)
    thread.start()
    try:
        wait_for(lambda: running(driver, cid))
        time.sleep(0.3)
        before = driver.stats(cid)
        os.write(write_end, b"g")
        wait_for(lambda: driver.stats(cid).cgroup_stats["memory_stats"]["usage"]["usage"]  # type: ignore[index]
                 > before.cgroup_stats["memory_stats"]["usage"]["usage"] + 60 * MiB)  # type: ignore[index]
        after = driver.stats(cid)
        assert after.system_usage > before.system_usage > 0
        assert after.read > before.read
        assert ("rss" if V1 else "anon") in after.cgroup_stats["memory_stats"]["stats"]  # type: ignore[index]
        assert [i["name"] for i in after.interfaces or []] == ["lo"]
        assert '"cgroup_stats":{"cpu_stats":{"cpu_usage":{"total_usage":' in after.to_json()
    finally:
        os.close(write_end)
        driver.terminate(Command(id=cid))
        thread.join(10)


def test_pause_stops_and_unpause_resumes(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    thread, _ = start_in_background(driver, shell(cid, busybox_rootfs, "while :; do :; done"))
    state = cgroup_file("freezer", cid, "freezer.state", "cgroup.events")
    frozen, thawed = ("FROZEN", "THAWED") if V1 else ("frozen 1", "frozen 0")
    try:
        driver.pause(Command(id=cid))
        assert frozen in state.read_text()
        assert _cpu_seconds(driver, cid, 0.5) == 0.0
        driver.unpause(Command(id=cid))
        assert thawed in state.read_text()
        assert _cpu_seconds(driver, cid, 0.5) > 0.2
    finally:
        driver.terminate(Command(id=cid))
        thread.join(10)
    with pytest.raises(NotRunningError):
        driver.pause(Command(id=cid))
    with pytest.raises(NotRunningError):
        driver.unpause(Command(id=cid))
    with pytest.raises(NotRunningError):
        driver.stats(cid)


def test_a_custom_cgroup_parent_that_exists_stays(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    parent = f"execdriver-test-{uuid.uuid4().hex[:8]}"
    mounts = roots()
    for mount in mounts:
        os.mkdir(os.path.join(mount, parent))
    try:
        status, out, _ = run(driver, shell(cid, busybox_rootfs, membership(), cgroup_parent=parent))
        assert status.exit_code == 0 and out.strip().endswith(f"/{parent}/{cid}")
        # The engine's parent is the engine's: it stays, empty.
        assert all(os.path.isdir(os.path.join(mount, parent)) for mount in mounts)
        assert not any(os.path.exists(os.path.join(mount, parent, cid)) for mount in mounts)
    finally:
        for mount in mounts:
            if os.path.isdir(os.path.join(mount, parent)):
                os.rmdir(os.path.join(mount, parent))


def test_the_parents_a_container_made_go_with_it(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    # As containerd's /<namespace>/<id>: no one made the parents, so no one else would remove them.
    top = f"execdriver-test-{uuid.uuid4().hex[:8]}"
    mounts = roots()
    try:
        status, out, _ = run(driver, shell(cid, busybox_rootfs, membership(),
                                           cgroup_parent=f"{top}/namespace"))
        assert status.exit_code == 0 and out.strip().endswith(f"/{top}/namespace/{cid}")
        assert [mount for mount in mounts if os.path.exists(os.path.join(mount, top))] == []
    finally:
        for mount in mounts:
            for directory in (os.path.join(mount, top, "namespace"), os.path.join(mount, top)):
                if os.path.isdir(directory):
                    os.rmdir(directory)


def test_clean_after_the_api_process_and_its_fork_server_were_killed(state_root: Path, busybox_rootfs: Path,
                                                                       cid: str) -> None:
    # Both die by SIGKILL: the init dies with the fork server (parent-death
    # signal); the cgroup and the state stay until clean(id) removes them.
    program = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
from execdriver import Command, Pipes, ProcessConfig, Resources
from execdriver.native.driver import NativeDriver
driver = NativeDriver(root={str(state_root)!r})
command = Command(id={cid!r}, rootfs={str(busybox_rootfs)!r}, resources=Resources(pids_limit=10),
                  process_config=ProcessConfig(entrypoint="sleep", arguments=["60"]))
driver.run(command, Pipes())
"""
    api = subprocess.Popen([sys.executable, "-c", program])
    memory_dir = cgroup_file("memory", cid, "")
    deadline = time.monotonic() + 20
    try:
        while not (memory_dir.is_dir() and (memory_dir / "cgroup.procs").read_text().strip()):
            assert time.monotonic() < deadline and api.poll() is None
            time.sleep(0.01)
    except BaseException:
        api.kill()  # its fork server then kills the container
        api.wait()
        raise
    servers = [int(p) for p in os.listdir("/proc") if p.isdigit() and process.parent(int(p)) == api.pid]
    for pid in (*servers, api.pid):
        os.kill(pid, signal.SIGKILL)
    api.wait()
    wait_for(lambda: not (memory_dir / "cgroup.procs").read_text().strip())
    assert memory_dir.exists() and (state_root / cid).exists()  # what a crash leaves
    with NativeDriver(root=str(state_root)) as driver:
        driver.clean(cid)
    assert not memory_dir.exists()
    assert not (state_root / cid).exists()


@pytest.mark.skipif(V1, reason="memory.oom.group and the PSI files are cgroup v2's (the guest runs this)")
def test_v2_an_oom_takes_the_whole_container_and_stats_carry_pressure(driver: NativeDriver, cid: str) -> None:
    # Without memory.oom.group the kernel would kill python alone, and the shell would say "survived".
    script = "sleep 60 & python3 -I -c \"b = b'x' * (200 << 20)\"; echo survived"
    command = Command(id=cid, rootfs="/", readonly_rootfs=True,
                      resources=Resources(memory=48 * MiB, memory_swap=48 * MiB),
                      process_config=ProcessConfig(entrypoint="sh", arguments=["-c", script]))
    counts: list[int] = []

    def after(_config: ProcessConfig, _pid: int, oom: OOMEvents) -> None:
        counts.append(oom.count)

    status, out, _ = run(driver, command, hooks=Hooks(post_stop=[after]))
    assert (status.exit_code, status.oom_killed, out) == (137, True, "")
    # The kill of the whole container may wake memory.events after its exit: the hooks still see it.
    assert counts and counts[0] >= 1
    other = f"{cid}-psi"
    thread, _ = start_in_background(driver, python(other, "import time; time.sleep(60)"))
    try:
        stats = driver.stats(other).cgroup_stats
        assert stats is not None
        for group in ("cpu_stats", "memory_stats", "blkio_stats"):
            assert set(stats[group]["psi"]["some"]) == {"avg10", "avg60", "avg300", "total"}, group
    finally:
        driver.terminate(Command(id=other))
        thread.join(10)
        driver.clean(other)
