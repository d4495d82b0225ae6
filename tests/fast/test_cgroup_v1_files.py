"""execdriver/linux/cgroups/v1.py: the v1 manager's file work, its hierarchies laid out as cgroupfs.

The manager is given the controller -> mount mapping (``mount_points``)
that it reads from /proc/self/mountinfo on a host. What needs the kernel
(tasks, OOM eventfds, the freezer actually freezing) is the root tier's.
"""

from __future__ import annotations

import errno
import os

import pytest

from execdriver.linux.cgroups import CgroupError, Limits
from execdriver.linux.cgroups.v1 import V1Manager
from tests.fast.cgroupfs import CgroupFS

pytestmark = pytest.mark.fast

MiB = 1024 * 1024
UNLIMITED = "9223372036854771712"  # what v1 reports for "no limit" on 64-bit hosts
# Hierarchies as Debian mounts them: cpu and cpuacct co-mounted, the others one each.
MOUNTS = {"cpu": "cpu,cpuacct", "cpuacct": "cpu,cpuacct", "cpuset": "cpuset", "memory": "memory",
          "devices": "devices", "freezer": "freezer", "blkio": "blkio", "pids": "pids", "hugetlb": "hugetlb"}
FILES = {
    "cpu,cpuacct": ("cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.rt_period_us", "cpu.rt_runtime_us",
                    "cpu.idle", "cgroup.procs", "tasks"),
    "cpuset": ("cpuset.cpus", "cpuset.mems", "cgroup.procs", "tasks"),
    "memory": ("memory.limit_in_bytes", "memory.soft_limit_in_bytes", "memory.oom_control", "memory.swappiness",
               "memory.kmem.tcp.limit_in_bytes", "cgroup.procs", "tasks"),
    "devices": ("devices.allow", "devices.deny", "cgroup.procs", "tasks"),
    "freezer": ("freezer.state", "cgroup.procs", "tasks"),
    "blkio": ("blkio.weight", "blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device",
              "blkio.throttle.read_iops_device", "blkio.throttle.write_iops_device", "cgroup.procs", "tasks"),
    "pids": ("pids.max", "cgroup.procs", "tasks"),
    "hugetlb": ("hugetlb.2MB.limit_in_bytes", "cgroup.procs", "tasks"),
}

# What the kernel shows in a new cgroup: no limit, no process, thawed, no cpuset yet (0 elsewhere).
NEW_CGROUP = {
    "cgroup.procs": "", "tasks": "", "cpuset.cpus": "", "cpuset.mems": "", "devices.allow": "", "devices.deny": "",
    "memory.limit_in_bytes": UNLIMITED, "memory.soft_limit_in_bytes": UNLIMITED, "memory.swappiness": "60",
    "memory.kmem.tcp.limit_in_bytes": UNLIMITED, "cpu.shares": "1024", "cpu.cfs_period_us": "100000",
    "cpu.cfs_quota_us": "-1", "cpu.rt_period_us": "1000000", "cpu.rt_runtime_us": "0",
    "pids.max": "max", "freezer.state": "THAWED", "blkio.weight": "500",
    "blkio.throttle.read_bps_device": "", "blkio.throttle.write_bps_device": "", "blkio.throttle.read_iops_device": "",
    "blkio.throttle.write_iops_device": "", "hugetlb.2MB.limit_in_bytes": UNLIMITED,
}


def _mounts(fs: CgroupFS, without: tuple[str, ...] = ()) -> dict[str, str]:
    return {name: str(fs.root / mount) for name, mount in MOUNTS.items() if name not in without}


def _container(fs: CgroupFS, path: str = "execdriver/c1", swap: str | None = UNLIMITED,
               files: dict[str, dict[str, str]] | None = None) -> V1Manager:
    """Every hierarchy with the container's directory and its interface files, as new (NEW_CGROUP).

    ``swap``: memory.memsw.limit_in_bytes's value, None for a kernel that accounts no swap;
    ``files``: per hierarchy (its directory's name), files and values to add.
    """
    for mount, names in FILES.items():
        fs.make(mount, {"cpuset.cpus": "0-3", "cpuset.mems": "0"} if mount == "cpuset" else {})
        contents = {name: NEW_CGROUP.get(name, "0") for name in names}
        if mount == "memory" and swap is not None:
            contents["memory.memsw.limit_in_bytes"] = swap
        contents.update((files or {}).get(mount, {}))
        fs.make(f"{mount}/{path}", contents)
    return V1Manager(path, _mounts(fs))


def test_one_directory_per_hierarchy_freezer_first(cgroupfs: CgroupFS) -> None:
    manager = V1Manager("/docker/abc/", _mounts(cgroupfs))
    root = cgroupfs.root
    assert manager.path == "docker/abc"
    assert manager.directories() == [f"{root}/freezer/docker/abc", f"{root}/cpu,cpuacct/docker/abc",
                                     f"{root}/cpuset/docker/abc", f"{root}/memory/docker/abc",
                                     f"{root}/devices/docker/abc", f"{root}/blkio/docker/abc",
                                     f"{root}/pids/docker/abc", f"{root}/hugetlb/docker/abc"]
    # tasks, not cgroup.procs: a process moving itself takes no threadgroup lock.
    assert manager.join_files() == [os.path.join(d, "tasks") for d in manager.directories()]


@pytest.mark.parametrize("missing", ["memory", "freezer"])
def test_a_host_without_memory_or_freezer_is_refused(cgroupfs: CgroupFS, missing: str) -> None:
    with pytest.raises(CgroupError, match="this host mounts no memory or freezer hierarchy"):
        V1Manager("c1", _mounts(cgroupfs, without=(missing,)))


def test_each_limit_goes_to_its_file(cgroupfs: CgroupFS) -> None:
    manager = _container(cgroupfs)
    manager.set(Limits(
        memory_reservation=128 * MiB, oom_kill_disable=True, memory_swappiness=10, kernel_tcp=16 * MiB,
        cpu_shares=512, cpu_period=100000, cpu_quota=-1, cpuset_cpus="1", cpuset_mems="0", pids_limit=-1,
        blkio_weight=300, blkio_throttle=[("read_bps", 8, 0, 1024), ("write_iops", 8, 0, 0)], cpu_idle=1,
        hugepage_limits=[("2MB", 8 * MiB)]))
    assert cgroupfs.written() == [
        ("memory/execdriver/c1/memory.soft_limit_in_bytes", str(128 * MiB)),
        ("memory/execdriver/c1/memory.oom_control", "1"),
        ("memory/execdriver/c1/memory.swappiness", "10"),
        ("memory/execdriver/c1/memory.kmem.tcp.limit_in_bytes", str(16 * MiB)),
        ("cpu,cpuacct/execdriver/c1/cpu.shares", "512"),
        ("cpu,cpuacct/execdriver/c1/cpu.cfs_period_us", "100000"),
        ("cpu,cpuacct/execdriver/c1/cpu.cfs_quota_us", "-1"),
        ("cpuset/execdriver/c1/cpuset.cpus", "1"),
        ("cpuset/execdriver/c1/cpuset.mems", "0"),
        ("pids/execdriver/c1/pids.max", "max"),
        ("blkio/execdriver/c1/blkio.weight", "300"),
        ("blkio/execdriver/c1/blkio.throttle.read_bps_device", "8:0 1024"),
        ("blkio/execdriver/c1/blkio.throttle.write_iops_device", "8:0 0"),  # 0 lifts the limit in v1's terms
        ("cpu,cpuacct/execdriver/c1/cpu.idle", "1"),
        ("hugetlb/execdriver/c1/hugetlb.2MB.limit_in_bytes", str(8 * MiB)),
    ]


def test_nothing_set_writes_nothing(cgroupfs: CgroupFS) -> None:
    _container(cgroupfs).set(Limits())
    assert cgroupfs.writes == []


# --- memory and memory+swap: memsw must stay >= memory at every step ---------------------------


def _memory_writes(fs: CgroupFS) -> list[tuple[str, str]]:
    return fs.written("memory/execdriver/c1")


def test_memory_alone_under_an_unlimited_memsw(cgroupfs: CgroupFS) -> None:
    manager = _container(cgroupfs)
    manager.set(Limits(memory=64 * MiB))
    assert _memory_writes(cgroupfs) == [("memory.limit_in_bytes", str(64 * MiB))]


def _limited(fs: CgroupFS, memory: int, swap: int) -> V1Manager:
    return _container(fs, swap=str(swap), files={"memory": {"memory.limit_in_bytes": str(memory)}})


def test_memory_alone_above_the_memsw_in_place_is_refused_and_named(cgroupfs: CgroupFS) -> None:
    """As runc: memsw is not raised behind the caller's back; the kernel's EINVAL, in the limits' terms."""
    manager = _limited(cgroupfs, 32 * MiB, 64 * MiB)
    cgroupfs.refusals_once["memory/execdriver/c1/memory.limit_in_bytes"] = errno.EINVAL  # memory > memsw
    with pytest.raises(CgroupError, match=rf"^resources\.memory: {128 * MiB} is above the memory\+swap limit in "
                                          rf"place \({64 * MiB}\); give memory_swap with it$"):
        manager.set(Limits(memory=128 * MiB), running=True)
    assert cgroupfs.writes == []


@pytest.mark.parametrize(("memory", "swap", "values", "expected"), [
    # Both given, memsw above the memory limit in place: memsw first (runc's setMemoryAndSwap).
    (128 * MiB, 128 * MiB, {"memory": 256 * MiB, "memory_swap": 512 * MiB},
     [("memory.memsw.limit_in_bytes", str(512 * MiB)), ("memory.limit_in_bytes", str(256 * MiB))]),
    (30 * MiB, 50 * MiB, {"memory": 60 * MiB, "memory_swap": 80 * MiB},
     [("memory.memsw.limit_in_bytes", str(80 * MiB)), ("memory.limit_in_bytes", str(60 * MiB))]),
    # ... else memory first: shrinking.
    (512 * MiB, 1024 * MiB, {"memory": 64 * MiB, "memory_swap": 128 * MiB},
     [("memory.limit_in_bytes", str(64 * MiB)), ("memory.memsw.limit_in_bytes", str(128 * MiB))]),
    # Unlimited swap goes first; unlimited memory alone lifts memsw too, first.
    (64 * MiB, 128 * MiB, {"memory": 64 * MiB, "memory_swap": -1},
     [("memory.memsw.limit_in_bytes", "-1"), ("memory.limit_in_bytes", str(64 * MiB))]),
    (64 * MiB, 128 * MiB, {"memory": -1},
     [("memory.memsw.limit_in_bytes", "-1"), ("memory.limit_in_bytes", "-1")]),
    # Either alone (an update): the other stays.
    (50 * MiB, 128 * MiB, {"memory_swap": 96 * MiB}, [("memory.memsw.limit_in_bytes", str(96 * MiB))]),
    (50 * MiB, 128 * MiB, {"memory_swap": -1}, [("memory.memsw.limit_in_bytes", "-1")]),
    (50 * MiB, 128 * MiB, {"memory_reservation": -1}, [("memory.soft_limit_in_bytes", "-1")]),
])
def test_memory_and_memsw_in_runcs_order(cgroupfs: CgroupFS, memory: int, swap: int, values: dict[str, int],
                                         expected: list[tuple[str, str]]) -> None:
    _limited(cgroupfs, memory, swap).set(Limits(**values), running=True)
    assert _memory_writes(cgroupfs) == expected


def test_a_failed_second_write_puts_the_first_back(cgroupfs: CgroupFS) -> None:
    manager = _limited(cgroupfs, 128 * MiB, 128 * MiB)
    cgroupfs.refusals_once["memory/execdriver/c1/memory.limit_in_bytes"] = errno.EINVAL
    with pytest.raises(CgroupError, match=r"^resources\.memory: writing"):
        manager.set(Limits(memory=256 * MiB, memory_swap=512 * MiB), running=True)
    assert _memory_writes(cgroupfs) == [("memory.memsw.limit_in_bytes", str(512 * MiB)),
                                        ("memory.memsw.limit_in_bytes", str(128 * MiB))]


def test_memsw_below_the_memory_in_place_is_named(cgroupfs: CgroupFS) -> None:
    manager = _limited(cgroupfs, 64 * MiB, 128 * MiB)
    cgroupfs.refusals_once["memory/execdriver/c1/memory.memsw.limit_in_bytes"] = errno.EINVAL
    with pytest.raises(CgroupError, match=rf"^resources\.memory_swap: {32 * MiB} is below the memory limit in "
                                          rf"place \({64 * MiB}\); give memory with it$"):
        manager.set(Limits(memory_swap=32 * MiB), running=True)


def test_swap_without_swap_accounting_is_refused(cgroupfs: CgroupFS) -> None:
    manager = _container(cgroupfs, swap=None)
    with pytest.raises(CgroupError, match=r"^resources\.memory_swap: this kernel accounts no swap"):
        manager.set(Limits(memory=64 * MiB, memory_swap=128 * MiB))
    assert cgroupfs.writes == []
    manager.set(Limits(memory=64 * MiB))  # memory alone needs no memsw
    manager.set(Limits(memory=-1))  # nor unlimited memory
    assert _memory_writes(cgroupfs) == [("memory.limit_in_bytes", str(64 * MiB)), ("memory.limit_in_bytes", "-1")]


def test_update_below_the_usage_says_so(cgroupfs: CgroupFS) -> None:
    manager = _container(cgroupfs, files={"memory": {"memory.usage_in_bytes": str(100 * MiB)}})
    cgroupfs.refusals["memory/execdriver/c1/memory.limit_in_bytes"] = errno.EBUSY  # nothing left to reclaim
    with pytest.raises(CgroupError, match=rf"^resources\.memory: cannot lower the limit to {64 * MiB} bytes: the "
                                          rf"container uses {100 * MiB} bytes that the kernel could not reclaim"):
        manager.set(Limits(memory=64 * MiB), running=True)
    with pytest.raises(CgroupError, match=r"^resources\.memory: writing .*: Device or resource busy$"):
        manager.set(Limits(memory=64 * MiB))  # at create: the kernel's own words


# --- cpu bandwidth: period and quota (CFS, real-time) ------------------------------------------


def _cpu_writes(fs: CgroupFS) -> list[tuple[str, str]]:
    return fs.written("cpu,cpuacct/execdriver/c1")


def test_a_period_the_kernel_refuses_first_is_written_again_after_the_quota(cgroupfs: CgroupFS) -> None:
    """A pod's parent at 50%: a shorter period under the old quota is over it until the quota follows (runc's retry)."""
    manager = _container(cgroupfs)
    cgroupfs.refusals_once["cpu,cpuacct/execdriver/c1/cpu.cfs_period_us"] = errno.EINVAL
    manager.set(Limits(cpu_period=10000, cpu_quota=3000), running=True)
    assert _cpu_writes(cgroupfs) == [("cpu.cfs_quota_us", "3000"), ("cpu.cfs_period_us", "10000")]


def test_a_period_refused_without_a_quota_is_an_error(cgroupfs: CgroupFS) -> None:
    cgroupfs.refusals_once["cpu,cpuacct/execdriver/c1/cpu.cfs_period_us"] = errno.EINVAL
    with pytest.raises(CgroupError, match=r"^resources\.cpu_period: writing 10000 to .*: Invalid argument$"):
        _container(cgroupfs).set(Limits(cpu_period=10000), running=True)


def test_a_quota_over_the_parents_says_why(cgroupfs: CgroupFS) -> None:
    cgroupfs.refusals_once["cpu,cpuacct/execdriver/c1/cpu.cfs_quota_us"] = errno.EINVAL
    with pytest.raises(CgroupError, match=r"^resources\.cpu_quota: writing 60000 to .*: Invalid argument \(quota / "
                                          r"period may not exceed the parent cgroup's\)$"):
        _container(cgroupfs).set(Limits(cpu_quota=60000), running=True)


@pytest.mark.parametrize(("values", "expected"), [
    ({"cpu_quota": -5}, [("cpu.cfs_quota_us", "-1")]),  # any negative quota: unlimited
    ({"cpu_rt_runtime": 500001}, [("cpu.rt_runtime_us", "500001")]),
    ({"cpu_rt_period": 900001, "cpu_rt_runtime": 600001},
     [("cpu.rt_period_us", "900001"), ("cpu.rt_runtime_us", "600001")]),
    ({"cpu_shares": 200, "cpu_period": 900000, "cpu_quota": 600000},
     [("cpu.shares", "200"), ("cpu.cfs_period_us", "900000"), ("cpu.cfs_quota_us", "600000")]),
])
def test_cpu_values_go_to_their_files(cgroupfs: CgroupFS, values: dict[str, int],
                                      expected: list[tuple[str, str]]) -> None:
    _container(cgroupfs).set(Limits(**values), running=True)
    assert _cpu_writes(cgroupfs) == expected


def test_a_real_time_period_below_the_runtime_in_place_goes_after_it(cgroupfs: CgroupFS) -> None:
    manager = _container(cgroupfs, files={"cpu,cpuacct": {"cpu.rt_runtime_us": "600000"}})
    cgroupfs.refusals_once["cpu,cpuacct/execdriver/c1/cpu.rt_period_us"] = errno.EINVAL
    manager.set(Limits(cpu_rt_period=500000, cpu_rt_runtime=400000), running=True)
    assert _cpu_writes(cgroupfs) == [("cpu.rt_runtime_us", "400000"), ("cpu.rt_period_us", "500000")]


# --- devices, cpuset, the rest -----------------------------------------------------------------


def test_update_leaves_the_device_rules_alone(cgroupfs: CgroupFS) -> None:
    """As runc's update (SkipDevices): rewriting them denies every device for a moment."""
    _container(cgroupfs).set(Limits(device_rules=[("allow", "c 1:3 rwm")], pids_limit=30), running=True)
    assert cgroupfs.written() == [("pids/execdriver/c1/pids.max", "30")]



def test_device_rules_deny_all_then_each_rule_in_its_own_write(cgroupfs: CgroupFS) -> None:
    _container(cgroupfs).set(Limits(device_rules=[
        ("allow", "c 1:3 rwm"), ("allow", "c 1:5 rwm"), ("deny", "c 1:5 w"), ("allow", "b 8:0 r")]))
    assert cgroupfs.written("devices/execdriver/c1") == [
        ("devices.deny", "a"),
        ("devices.allow", "c 1:3 rwm"), ("devices.allow", "c 1:5 rwm"),
        ("devices.deny", "c 1:5 w"),
        ("devices.allow", "b 8:0 r"),
    ]


def test_create_copies_the_parents_cpuset_from_the_root_down(cgroupfs: CgroupFS) -> None:
    manager = _container(cgroupfs, path="docker/c1")
    cgroupfs.make("cpuset/docker", {"cpuset.cpus": "", "cpuset.mems": "\n"})  # new v1 cpusets are empty
    manager.create(Limits(pids_limit=10))
    assert cgroupfs.written() == [
        ("cpuset/docker/cpuset.cpus", "0-3"), ("cpuset/docker/cpuset.mems", "0"),
        ("cpuset/docker/c1/cpuset.cpus", "0-3"), ("cpuset/docker/c1/cpuset.mems", "0"),
        ("pids/docker/c1/pids.max", "10"),
    ]


def test_create_keeps_a_cpuset_already_set(cgroupfs: CgroupFS) -> None:
    manager = _container(cgroupfs, files={"cpuset": {"cpuset.cpus": "2", "cpuset.mems": "0"}})
    cgroupfs.make("cpuset/execdriver", {"cpuset.cpus": "", "cpuset.mems": ""})
    manager.create(Limits())
    assert cgroupfs.written() == [("cpuset/execdriver/cpuset.cpus", "0-3"), ("cpuset/execdriver/cpuset.mems", "0")]


@pytest.mark.parametrize(("values", "message"), [
    ({"unified": [("memory.high", "1M")]}, r"^resources\.unified: memory\.high is a cgroup v2 file, and this host "
                                           r"has cgroup v1$"),
])
def test_v2_only_limits_are_refused(cgroupfs: CgroupFS, values: dict[str, object], message: str) -> None:
    with pytest.raises(CgroupError, match=message):
        _container(cgroupfs).set(Limits(**values))
    assert cgroupfs.writes == []


def test_hugepages_need_a_hugetlb_hierarchy(cgroupfs: CgroupFS) -> None:
    _container(cgroupfs)
    manager = V1Manager("execdriver/c1", _mounts(cgroupfs, without=("hugetlb",)))
    with pytest.raises(CgroupError, match=r"^resources\.hugepage_limits: this host's cgroup v1 has no hugetlb"):
        manager.set(Limits(hugepage_limits=[("2MB", 0)]))


def test_freeze_and_thaw_through_freezer_state(cgroupfs: CgroupFS) -> None:
    manager = _container(cgroupfs)
    assert not manager.frozen()
    manager.freeze()
    assert manager.frozen() and cgroupfs.read("freezer/execdriver/c1/freezer.state") == "FROZEN"
    manager.thaw()
    assert not manager.frozen()
    assert cgroupfs.written("freezer/execdriver/c1") == [("freezer.state", "FROZEN"), ("freezer.state", "THAWED")]


def test_memory_limit_and_oom_kills(cgroupfs: CgroupFS) -> None:
    manager = _container(cgroupfs, files={"memory": {
        "memory.limit_in_bytes": UNLIMITED, "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"}})
    assert manager.memory_limit() == 0  # v1's "no limit"
    assert manager.oom_kills() == 3
    (cgroupfs.root / "memory/execdriver/c1/memory.limit_in_bytes").write_text(str(64 * MiB))
    assert manager.memory_limit() == 64 * MiB


def test_stats_read_back_in_libcontainer_shape(cgroupfs: CgroupFS) -> None:
    manager = _container(
        cgroupfs,
        files={"cpu,cpuacct": {"cpuacct.stat": "user 150\nsystem 50\n", "cpuacct.usage": "123456789",
                           "cpuacct.usage_percpu": "100 200 300 \n",
                           "cpu.stat": "nr_periods 5\nnr_throttled 1\nthrottled_time 999\n"},
           "memory": {"memory.stat": "cache 4096\nrss 8192\ntotal_cache 4096\n", "memory.usage_in_bytes": "12288",
                      "memory.max_usage_in_bytes": "20000", "memory.failcnt": "2",
                      "memory.limit_in_bytes": str(64 * MiB), "memory.memsw.usage_in_bytes": "13000",
                      "memory.kmem.usage_in_bytes": "512", "memory.kmem.limit_in_bytes": UNLIMITED,
                      "memory.use_hierarchy": "1"},
           "pids": {"pids.current": "2", "pids.max": "max"},
           "blkio": {"blkio.throttle.io_service_bytes_recursive":
                     "8:0 Read 100\n8:0 Write 200\n8:0 Sync 300\n8:0 Async 0\n8:0 Total 300\nTotal 300\n",
                     "blkio.throttle.io_serviced_recursive": "8:0 Read 1\n8:0 Write 2\nTotal 3\n"},
           "hugetlb": {"hugetlb.2MB.usage_in_bytes": "2097152", "hugetlb.2MB.max_usage_in_bytes": "4194304",
                       "hugetlb.2MB.failcnt": "1"}})
    ticks = os.sysconf("SC_CLK_TCK")
    stats = manager.stats()
    assert stats["cpu_stats"] == {
        "cpu_usage": {"total_usage": 123456789, "percpu_usage": [100, 200, 300],
                      "usage_in_kernelmode": 50 * 1_000_000_000 // ticks,
                      "usage_in_usermode": 150 * 1_000_000_000 // ticks},
        "throttling_data": {"periods": 5, "throttled_periods": 1, "throttled_time": 999},
    }
    memory = stats["memory_stats"]
    assert memory["cache"] == 4096 and memory["use_hierarchy"] is True
    assert memory["usage"] == {"usage": 12288, "max_usage": 20000, "failcnt": 2, "limit": 64 * MiB}
    assert memory["swap_usage"] == {"usage": 13000, "max_usage": 0, "failcnt": 0, "limit": 0}  # memsw: UNLIMITED
    assert memory["kernel_usage"] == {"usage": 512, "max_usage": 0, "failcnt": 0, "limit": 0}
    assert memory["stats"] == {"cache": 4096, "rss": 8192, "total_cache": 4096}
    assert stats["pids_stats"] == {"current": 2, "limit": 0}
    assert stats["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": op, "value": value}
        for op, value in (("Read", 100), ("Write", 200), ("Sync", 300), ("Async", 0), ("Total", 300))]
    assert stats["blkio_stats"]["io_serviced_recursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 1}, {"major": 8, "minor": 0, "op": "Write", "value": 2}]
    assert stats["hugetlb_stats"] == {"2MB": {"usage": 2097152, "max_usage": 4194304, "failcnt": 1}}


def test_stats_without_the_optional_hierarchies(cgroupfs: CgroupFS) -> None:
    _container(cgroupfs)
    manager = V1Manager("execdriver/c1", _mounts(cgroupfs, without=("cpu", "cpuacct", "pids", "blkio", "hugetlb")))
    stats = manager.stats()
    assert stats["cpu_stats"]["cpu_usage"] == {"total_usage": 0, "percpu_usage": [], "usage_in_kernelmode": 0,
                                               "usage_in_usermode": 0}
    assert stats["pids_stats"] == {"current": 0, "limit": 0}
    assert stats["blkio_stats"]["io_service_bytes_recursive"] == []
    assert stats["hugetlb_stats"] == {}


def test_pids_come_from_the_freezer_hierarchy(cgroupfs: CgroupFS) -> None:
    manager = _container(cgroupfs, files={"freezer": {"cgroup.procs": "5\n6\n"}, "memory": {"cgroup.procs": "99\n"}})
    assert manager.pids() == [5, 6]


def test_destroy_removes_the_directory_in_every_hierarchy(cgroupfs: CgroupFS) -> None:
    for mount in set(MOUNTS.values()):
        cgroupfs.make(f"{mount}/parent/c1")
    manager = V1Manager("parent/c1", _mounts(cgroupfs))
    assert manager.exists()
    manager.destroy(parent_levels=1)
    assert not manager.exists()
    assert all(not os.path.exists(cgroupfs.root / mount / "parent") for mount in MOUNTS.values())
