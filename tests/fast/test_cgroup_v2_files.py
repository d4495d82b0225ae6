"""execdriver/linux/cgroups/v2.py and base.py: the v2 manager's file work, in a directory laid out as cgroupfs.

What needs the kernel (moving a pid in, the eBPF device program, the freezer
actually freezing) is the root tier's (tests/test_cgroup_v2.py); here each
limit's file and value, the delegation of controllers, the stats read back.
"""

from __future__ import annotations

import errno
import os
import select

import pytest

from execdriver.linux import cgroups
from execdriver.linux.cgroups import CgroupError, Limits
from execdriver.linux.cgroups.base import read_int, read_map
from execdriver.linux.cgroups.v2 import V2Manager
from tests.fast.cgroupfs import CgroupFS

pytestmark = pytest.mark.fast

MiB = 1024 * 1024
CONTROLLERS = "cpuset cpu io memory hugetlb pids"
# The interface files of a container's cgroup that set() writes.
LIMIT_FILES = (
    "memory.max", "memory.oom.group", "memory.low", "memory.swap.max", "cpu.weight", "cpu.max", "cpuset.cpus",
    "cpuset.mems", "pids.max", "io.weight", "io.max", "cpu.idle", "hugetlb.2MB.max", "hugetlb.1GB.max",
    "memory.high", "cgroup.freeze", "cgroup.kill",
)


def _container(fs: CgroupFS, path: str = "execdriver/c1", **files: str) -> V2Manager:
    """A v2 root delegating every controller, and the container's cgroup with empty interface files."""
    fs.make("", {"cgroup.controllers": CONTROLLERS, "cgroup.subtree_control": CONTROLLERS,
                 "cgroup.procs": ""})
    contents = {name: "" for name in LIMIT_FILES}
    contents.update({"cgroup.procs": "", "cgroup.events": "populated 0\nfrozen 0\n", "memory.current": "0"})
    contents.update({name.replace("_", "."): value for name, value in files.items()})
    fs.make(path, contents)
    manager = cgroups.manager(path, root=str(fs.root), cgroup_version=2)
    assert isinstance(manager, V2Manager)
    return manager


def test_manager_picks_v2_under_the_given_root(cgroupfs: CgroupFS) -> None:
    manager = cgroups.manager("/docker/abc/", root=str(cgroupfs.root), cgroup_version=2)
    assert isinstance(manager, V2Manager)
    assert manager.path == "docker/abc"
    assert manager.directories() == [f"{cgroupfs.root}/docker/abc"]
    assert manager.join_files() == [f"{cgroupfs.root}/docker/abc/cgroup.procs"]
    assert isinstance(cgroups.manager(""), cgroups.NoCgroup)


@pytest.mark.parametrize("path", ["/", "", "a/../b", "..", "a/.."])
def test_a_path_must_name_a_cgroup_below_the_root(cgroupfs: CgroupFS, path: str) -> None:
    with pytest.raises(CgroupError, match="must name a cgroup below the root"):
        V2Manager(path, str(cgroupfs.root))


def test_each_limit_goes_to_its_file(cgroupfs: CgroupFS) -> None:
    manager = _container(cgroupfs)
    manager.set(Limits(
        memory=256 * MiB, memory_reservation=128 * MiB, memory_swap=512 * MiB, cpu_shares=1024, cpu_quota=50000,
        cpu_period=100000, cpuset_cpus="0-1", cpuset_mems="0", pids_limit=64, blkio_weight=500,
        blkio_throttle=[("read_bps", 8, 0, 1048576), ("write_iops", 8, 16, 0)], cpu_idle=1,
        hugepage_limits=[("2MB", 4 * MiB)], unified=[("memory.high", "200M")]))
    assert cgroupfs.written("execdriver/c1") == [
        ("memory.swap.max", str(256 * MiB)),  # v2's swap excludes memory: 512 - 256 MiB; first, as runc's
        ("memory.max", str(256 * MiB)),
        ("memory.oom.group", "1"),  # an OOM kill takes the whole container
        ("memory.low", str(128 * MiB)),
        ("cpu.weight", "39"),  # runc's shares -> weight: 1 + (1024 - 2) * 9999 / 262142
        ("cpu.max", "50000 100000"),
        ("cpuset.cpus", "0-1"),
        ("cpuset.mems", "0"),
        ("pids.max", "64"),
        ("io.weight", "default 4950"),  # 1 + (500 - 10) * 9999 / 990
        ("io.max", "8:0 rbps=1048576"),
        ("io.max", "8:16 wiops=max"),  # a rate of 0 lifts the limit
        ("cpu.idle", "1"),
        ("hugetlb.2MB.max", str(4 * MiB)),
        ("memory.high", "200M"),  # unified: as given, after everything else
    ]
    assert cgroupfs.read("execdriver/c1/memory.max") == str(256 * MiB)
    assert manager.memory_limit() == 256 * MiB


def test_nothing_set_writes_nothing(cgroupfs: CgroupFS) -> None:
    _container(cgroupfs).set(Limits())
    assert cgroupfs.writes == []


@pytest.mark.parametrize(("values", "expected"), [
    ({"memory": 64 * MiB, "memory_swap": -1}, [("memory.swap.max", "max"), ("memory.max", str(64 * MiB)),
                                               ("memory.oom.group", "1")]),
    ({"memory": 64 * MiB, "memory_swap": 64 * MiB}, [("memory.swap.max", "0"), ("memory.max", str(64 * MiB)),
                                                     ("memory.oom.group", "1")]),
    ({"memory": -1}, [("memory.swap.max", "max"), ("memory.max", "max")]),  # unlimited memory lifts swap too
    ({"memory": -1, "memory_swap": -1}, [("memory.swap.max", "max"), ("memory.max", "max")]),
    ({"memory_swap": -1}, [("memory.swap.max", "max")]),
    ({"memory_reservation": -1}, [("memory.low", "max")]),
    ({"cpu_quota": -1}, [("cpu.max", "max 100000")]),
    ({"cpu_period": 20000}, [("cpu.max", "max 20000")]),
    ({"cpu_quota": 150000}, [("cpu.max", "150000 100000")]),
    ({"pids_limit": -1}, [("pids.max", "max")]),
    ({"cpu_shares": 2}, [("cpu.weight", "1")]),
    ({"cpu_shares": 262144}, [("cpu.weight", "10000")]),
    ({"cpu_shares": 1_000_000}, [("cpu.weight", "10000")]),  # clamped to the kernel's range
    ({"blkio_weight": 10}, [("io.weight", "default 1")]),
    ({"blkio_weight": 1000}, [("io.weight", "default 10000")]),
])
def test_values_in_v2_terms(cgroupfs: CgroupFS, values: dict[str, int], expected: list[tuple[str, str]]) -> None:
    _container(cgroupfs).set(Limits(**values))
    assert cgroupfs.written("execdriver/c1") == expected


def test_swap_needs_memory_beside_it(cgroupfs: CgroupFS) -> None:
    """v2 limits swap apart: memory_swap (memory + swap) means nothing without memory (runc refuses it too)."""
    with pytest.raises(CgroupError, match=r"^resources\.memory_swap: cgroup v2 limits swap apart from memory"):
        _container(cgroupfs).set(Limits(memory_swap=128 * MiB), running=True)
    assert cgroupfs.writes == []


@pytest.mark.parametrize(("values", "current", "expected"), [
    ({"cpu_period": 900000}, "500000 1000000", "500000 900000"),  # the quota in place stays
    ({"cpu_quota": 600000}, "500000 900000", "600000 900000"),  # the period in place stays
    ({"cpu_quota": -1}, "600000 900000", "max 900000"),
    ({"cpu_period": 50000}, "max 100000", "max 50000"),
    ({"cpu_quota": -1, "cpu_period": 100000}, "600000 900000", "max 100000"),
    ({"cpu_quota": 3000, "cpu_period": 10000}, "500000 1000000", "3000 10000"),
])
def test_update_of_quota_or_period_keeps_the_other(cgroupfs: CgroupFS, values: dict[str, int], current: str,
                                                   expected: str) -> None:
    """runc's rule: one of them alone leaves the other as it was (cpu.max takes both at once)."""
    _container(cgroupfs, cpu_max=current).set(Limits(**values), running=True)
    assert cgroupfs.written("execdriver/c1") == [("cpu.max", expected)]


@pytest.mark.parametrize("values", [{"cpu_rt_runtime": 1000}, {"cpu_rt_period": 1000000}])
def test_real_time_bandwidth_is_refused(cgroupfs: CgroupFS, values: dict[str, int]) -> None:
    with pytest.raises(CgroupError, match=r"^resources\.cpu_rt_(runtime|period): cgroup v2 has no real-time"):
        _container(cgroupfs).set(Limits(**values))
    assert cgroupfs.writes == []


def test_update_leaves_the_oom_group_alone(cgroupfs: CgroupFS) -> None:
    _container(cgroupfs, memory_current=str(10 * MiB)).set(Limits(memory=64 * MiB), running=True)
    assert cgroupfs.written("execdriver/c1") == [("memory.max", str(64 * MiB))]


def test_update_below_the_usage_is_refused_and_the_limit_kept(cgroupfs: CgroupFS) -> None:
    manager = _container(cgroupfs, memory_current=str(100 * MiB), memory_max=str(200 * MiB))
    with pytest.raises(CgroupError, match=rf"cannot lower the limit to {64 * MiB} bytes: the container uses "
                                          rf"{100 * MiB} bytes; the old limit stays"):
        manager.set(Limits(memory=64 * MiB), running=True)
    assert cgroupfs.writes == []
    assert manager.memory_limit() == 200 * MiB


@pytest.mark.parametrize(("values", "message"), [
    ({"oom_kill_disable": True}, r"^resources\.oom_kill_disable: cgroup v2 cannot disable the OOM killer$"),
    ({"memory_swappiness": 60}, r"^resources\.memory_swappiness: cgroup v2 has no per-cgroup swappiness$"),
    ({"kernel_tcp": 1 << 20}, r"^resources\.kernel_tcp: cgroup v2 has no separate TCP memory limit$"),
])
def test_v1_only_limits_are_refused(cgroupfs: CgroupFS, values: dict[str, object], message: str) -> None:
    with pytest.raises(CgroupError, match=message):
        _container(cgroupfs).set(Limits(**values))
    assert cgroupfs.writes == []


def test_a_file_the_host_lacks_is_named(cgroupfs: CgroupFS) -> None:
    manager = _container(cgroupfs)
    os.unlink(f"{manager.dir}/hugetlb.1GB.max")
    with pytest.raises(CgroupError, match=r"^resources\.hugepage_limits \(1GB\): this host's cgroups have no "
                                          r"hugetlb\.1GB\.max$"):
        manager.set(Limits(hugepage_limits=[("1GB", 1 << 30)]))


def test_a_value_the_kernel_refuses_is_named(cgroupfs: CgroupFS) -> None:
    manager = _container(cgroupfs)
    cgroupfs.refusals["execdriver/c1/cpuset.cpus"] = errno.EINVAL
    with pytest.raises(CgroupError, match=r"^resources\.cpuset_cpus: writing 0-99 to .*/cpuset\.cpus: Invalid "
                                          r"argument$") as caught:
        manager.set(Limits(cpuset_cpus="0-99"))
    assert caught.value.errno == errno.EINVAL


# --- create: controllers delegated from the root down ---------------------------------------


def test_create_delegates_every_controller_offered_from_the_root_down(cgroupfs: CgroupFS) -> None:
    cgroupfs.make("", {"cgroup.controllers": "cpu io memory pids", "cgroup.subtree_control": ""})
    cgroupfs.make("docker", {"cgroup.controllers": "cpu io memory pids", "cgroup.subtree_control": "memory"})
    manager = V2Manager("docker/c1", str(cgroupfs.root))
    manager.create(Limits())
    assert cgroupfs.writes == [("cgroup.subtree_control", "+cpu +io +memory +pids"),
                               ("docker/cgroup.subtree_control", "+cpu +io +memory +pids")]
    assert manager.exists() and os.path.isdir(cgroupfs.root / "docker" / "c1")


def test_create_writes_nothing_where_every_controller_is_delegated(cgroupfs: CgroupFS) -> None:
    cgroupfs.make("", {"cgroup.controllers": "cpu memory", "cgroup.subtree_control": "memory cpu"})
    V2Manager("c1", str(cgroupfs.root)).create(Limits())
    assert cgroupfs.writes == []


def test_create_refuses_a_limit_whose_controller_is_not_offered_and_leaves_nothing(cgroupfs: CgroupFS) -> None:
    cgroupfs.make("", {"cgroup.controllers": "cpu pids", "cgroup.subtree_control": ""})
    manager = V2Manager("c1", str(cgroupfs.root))
    with pytest.raises(CgroupError, match=rf"^resources: the unified hierarchy offers no hugetlb, memory controller "
                                          rf"at {cgroupfs.root} \(cgroup.controllers: cpu pids\)$"):
        manager.create(Limits(memory=64 * MiB, hugepage_limits=[("2MB", 0)], pids_limit=5))
    assert not manager.exists()
    assert "c1" not in os.listdir(cgroupfs.root)


def test_a_parent_that_cannot_delegate_fails_only_what_needs_it(cgroupfs: CgroupFS) -> None:
    # A parent holding processes cannot enable controllers below it (EBUSY: no internal processes).
    cgroupfs.make("", {"cgroup.controllers": "cpu pids", "cgroup.subtree_control": "cpu"})
    cgroupfs.refusals["cgroup.subtree_control"] = errno.EBUSY
    quiet = V2Manager("quiet", str(cgroupfs.root))
    quiet.create(Limits())  # needs nothing: the parent's refusal does not matter
    assert quiet.exists()
    needy = V2Manager("needy", str(cgroupfs.root))
    with pytest.raises(CgroupError, match=r"^cgroup: writing \+cpu \+pids to .*cgroup.subtree_control: Device or "
                                          r"resource busy$"):
        needy.create(Limits(pids_limit=10))
    assert not needy.exists()


def test_create_leaves_nothing_when_a_limit_fails(cgroupfs: CgroupFS) -> None:
    cgroupfs.make("", {"cgroup.controllers": CONTROLLERS, "cgroup.subtree_control": CONTROLLERS})
    manager = V2Manager("made/by/us", str(cgroupfs.root))
    cgroupfs.make("made", {"cgroup.controllers": CONTROLLERS, "cgroup.subtree_control": CONTROLLERS})
    cgroupfs.make("made/by", {"cgroup.controllers": CONTROLLERS, "cgroup.subtree_control": CONTROLLERS})
    # A new directory has no interface files here (the kernel would add them): memory.max is missing.
    with pytest.raises(CgroupError, match=r"this host's cgroups have no memory\.max$"):
        manager.create(Limits(memory=64 * MiB))
    assert not os.path.exists(cgroupfs.root / "made" / "by" / "us")
    assert os.path.isdir(cgroupfs.root / "made" / "by")  # not ours: it was there before


# --- freezer, kill, OOM -----------------------------------------------------------------------


def test_freeze_and_thaw_write_cgroup_freeze_and_read_cgroup_events(cgroupfs: CgroupFS) -> None:
    manager = _container(cgroupfs, cgroup_events="populated 1\nfrozen 1\n")
    assert manager.frozen()
    manager.freeze()  # the kernel reports frozen already: no wait
    (cgroupfs.root / "execdriver/c1/cgroup.events").write_text("populated 1\nfrozen 0\n")
    assert not manager.frozen()
    manager.thaw()
    assert cgroupfs.written("execdriver/c1") == [("cgroup.freeze", "1"), ("cgroup.freeze", "0")]


def test_kill_uses_cgroup_kill_where_the_kernel_has_it(cgroupfs: CgroupFS) -> None:
    manager = _container(cgroupfs)
    manager.kill()
    assert cgroupfs.written("execdriver/c1") == [("cgroup.kill", "1")]


def test_kill_without_cgroup_kill_and_without_processes_signals_nothing(cgroupfs: CgroupFS) -> None:
    manager = _container(cgroupfs)
    os.unlink(f"{manager.dir}/cgroup.kill")
    manager.kill()
    assert cgroupfs.writes == []


def test_oom_kills_are_read_and_kept_once_the_cgroup_is_gone(cgroupfs: CgroupFS) -> None:
    manager = _container(cgroupfs, memory_events="low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\n")
    assert manager.oom_kills() == 2
    watch = manager.oom_watch()
    assert watch is not None
    fd, events = watch
    try:
        assert events == select.POLLPRI
        assert os.read(fd, 100).startswith(b"low 0")
    finally:
        os.close(fd)
    os.unlink(f"{manager.dir}/memory.events")
    assert manager.oom_kills() == 2  # a systemd scope goes when empty: the last count stays
    assert manager.oom_watch() is None


# --- stats --------------------------------------------------------------------------------------


def test_stats_read_back_in_libcontainer_shape(cgroupfs: CgroupFS) -> None:
    manager = _container(
        cgroupfs,
        cpu_stat="usage_usec 5000\nuser_usec 3000\nsystem_usec 2000\nnr_periods 10\nnr_throttled 2\n"
                 "throttled_usec 700\n",
        memory_stat="anon 100\nfile 200\nkernel 300\nsock 40\nworkingset_refault_anon -1\n",
        memory_events="low 0\nhigh 1\nmax 5\noom 1\noom_kill 1\n",
        memory_current="1000", memory_peak="2000", memory_max="max", memory_swap_current="30",
        memory_swap_max=str(64 * MiB), pids_current="3", pids_max="100",
        io_stat="8:0 rbytes=100 wbytes=200 rios=3 wios=4 dbytes=0 dios=0\n253:1 rbytes=5\n",
        cpu_pressure="some avg10=0.10 avg60=0.20 avg300=0.30 total=1234\n"
                     "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
        io_pressure="some avg10=1.50 avg60=0.00 avg300=0.00 total=9\n",
        **{"hugetlb.2MB.current": "2097152", "hugetlb.2MB.events": "max 4\n", "hugetlb.1GB.current": "0"},
    )
    stats = manager.stats()
    assert stats["cpu_stats"] == {
        "cpu_usage": {"total_usage": 5_000_000, "percpu_usage": [], "usage_in_kernelmode": 2_000_000,
                      "usage_in_usermode": 3_000_000},
        "throttling_data": {"periods": 10, "throttled_periods": 2, "throttled_time": 700_000},
        "psi": {"some": {"avg10": 0.1, "avg60": 0.2, "avg300": 0.3, "total": 1234},
                "full": {"avg10": 0.0, "avg60": 0.0, "avg300": 0.0, "total": 0}},
    }
    memory = stats["memory_stats"]
    assert memory["cache"] == 200
    assert memory["usage"] == {"usage": 1000, "max_usage": 2000, "failcnt": 5, "limit": 0}  # "max": no limit
    assert memory["swap_usage"] == {"usage": 30, "max_usage": 0, "failcnt": 0, "limit": 64 * MiB}
    assert memory["kernel_usage"]["usage"] == 300 and memory["kernel_tcp_usage"]["usage"] == 40
    assert memory["use_hierarchy"] is True
    assert memory["stats"] == {"anon": 100, "file": 200, "kernel": 300, "sock": 40, "workingset_refault_anon": -1}
    assert "psi" not in memory  # no memory.pressure file
    assert stats["pids_stats"] == {"current": 3, "limit": 100}
    blkio = stats["blkio_stats"]
    assert blkio["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 100}, {"major": 8, "minor": 0, "op": "Write", "value": 200},
        {"major": 253, "minor": 1, "op": "Read", "value": 5}, {"major": 253, "minor": 1, "op": "Write", "value": 0}]
    assert blkio["io_serviced_recursive"][:2] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 3}, {"major": 8, "minor": 0, "op": "Write", "value": 4}]
    assert blkio["psi"]["some"] == {"avg10": 1.5, "avg60": 0.0, "avg300": 0.0, "total": 9}
    assert stats["hugetlb_stats"] == {"1GB": {"usage": 0, "max_usage": 0, "failcnt": 0},
                                      "2MB": {"usage": 2097152, "max_usage": 0, "failcnt": 4}}


def test_stats_of_a_cgroup_without_files_are_zeros(cgroupfs: CgroupFS) -> None:
    cgroupfs.make("bare")
    stats = V2Manager("bare", str(cgroupfs.root)).stats()
    assert stats["cpu_stats"]["cpu_usage"]["total_usage"] == 0
    assert stats["memory_stats"]["usage"] == {"usage": 0, "max_usage": 0, "failcnt": 0, "limit": 0}
    assert stats["pids_stats"] == {"current": 0, "limit": 0}
    assert stats["blkio_stats"]["io_service_bytes_recursive"] == []
    assert stats["hugetlb_stats"] == {}


# --- what base.py does with files -------------------------------------------------------------


def test_pids_walks_the_cgroup_and_those_below(cgroupfs: CgroupFS) -> None:
    manager = _container(cgroupfs, cgroup_procs="12\n7\n")
    cgroupfs.make("execdriver/c1/sub", {"cgroup.procs": "7\n30\n"})
    cgroupfs.make("execdriver/c1/sub/deeper", {"cgroup.procs": ""})
    cgroupfs.make("execdriver/c1/noprocs")
    assert manager.pids() == [7, 12, 30]


def test_destroy_removes_the_cgroup_and_the_empty_ancestors_asked(cgroupfs: CgroupFS) -> None:
    cgroupfs.make("a/b/c")
    cgroupfs.make("a/other")
    manager = V2Manager("a/b/c", str(cgroupfs.root))
    assert manager.missing_ancestors() == 0
    manager.destroy(parent_levels=2)  # b goes; a still holds another cgroup and stays
    assert not os.path.exists(cgroupfs.root / "a" / "b") and os.path.isdir(cgroupfs.root / "a" / "other")
    assert not manager.exists()
    assert manager.missing_ancestors() == 1
    manager.destroy()  # gone already: nothing to do


def test_destroy_refuses_a_cgroup_that_is_not_empty(cgroupfs: CgroupFS) -> None:
    cgroupfs.make("busy", {"a-file": ""})  # on cgroupfs: a child cgroup; here, any entry
    with pytest.raises(CgroupError, match=r"^cannot remove cgroup .*/busy: Directory not empty$"):
        V2Manager("busy", str(cgroupfs.root)).destroy()


def test_read_helpers(cgroupfs: CgroupFS) -> None:
    cgroupfs.make("", {"n": "42\n", "m": "max\n", "bad": "x", "map": "a 1\nb -2\nc x\nd\n\ne 3 4\n"})
    assert read_int(f"{cgroupfs.root}/n") == 42
    assert read_int(f"{cgroupfs.root}/m") == 0 and read_int(f"{cgroupfs.root}/m", -1) == -1
    assert read_int(f"{cgroupfs.root}/absent", 9) == 9
    with pytest.raises(ValueError):  # a file that should hold a number and does not is not hidden
        read_int(f"{cgroupfs.root}/bad")
    assert read_map(f"{cgroupfs.root}/map") == {"a": 1, "b": -2}
    assert read_map(f"{cgroupfs.root}/absent") == {}
