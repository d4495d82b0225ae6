"""`execdriver update` on running containers, as runc 1.1.5's update.bats checks `runc update`.

Each test starts a busybox container from runc's default config with the
limits update.bats starts from, changes them through the command line and
reads the cgroup files back. cgroup v1 (this host) and v2 (the guest) where
the behaviour is common; the pod and real-time cases are v1's, as in runc's.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from execdriver.linux import cgroups
from tests import test_oci
from tests.helpers import cgroup_dir
from tests.test_oci import Runtime

runtime, bundle = test_oci.runtime, test_oci.bundle  # its fixtures

MiB = 1 << 20
V1 = cgroups.version() == 1
# update.bats' setup: what each container starts with.
START = {"memory": {"limit": 32 * MiB, "reservation": 24 * MiB},
         "cpu": {"shares": 100, "quota": 500000, "period": 1000000},
         "pids": {"limit": 20}}


class Files:
    """A container's cgroup files by their v1 names, read in the hierarchy or v2's terms."""

    def __init__(self, path: str) -> None:
        self.path = path

    def read(self, name: str) -> str:
        controller = name.split(".", maxsplit=1)[0]
        return (cgroup_dir(self.path, controller) / name).read_text().strip()

    def memory(self) -> tuple[str, str]:
        """(memory limit, memory+swap limit) in v1's terms: v2's swap.max is added to memory.max."""
        if V1:
            return self.read("memory.limit_in_bytes"), self.read("memory.memsw.limit_in_bytes") if SWAP else ""
        memory, swap = self.read("memory.max"), self.read("memory.swap.max")
        return memory, "max" if "max" in (memory, swap) else str(int(memory) + int(swap))

    def cpu(self) -> tuple[str, str]:
        """(quota, period), -1 for none in v1's terms."""
        if V1:
            return self.read("cpu.cfs_quota_us"), self.read("cpu.cfs_period_us")
        quota, period = self.read("cpu.max").split()
        return "-1" if quota == "max" else quota, period


UNLIMITED = (cgroup_dir("", "memory") / "memory.limit_in_bytes").read_text().strip() if V1 else "max"
SWAP = not V1 or (cgroup_dir("", "memory") / "memory.memsw.limit_in_bytes").exists()


@pytest.fixture()
def started(runtime: Runtime, bundle: Callable[..., Path], cid: str) -> Callable[..., Files]:
    """Runs ``cid`` (a sleep) with update.bats' starting limits and any ``resources`` over them."""
    def start(resources: dict[str, Any] | None = None, change: Callable[[dict[str, Any]], None] | None = None,
              args: tuple[str, ...] = ("sleep", "600"), *global_flags: str) -> Files:
        def configure(config: dict[str, Any]) -> None:
            config["linux"]["resources"] = {**START, **(resources or {})}
            if change is not None:
                change(config)
        runtime(*global_flags, "run", "-d", "--bundle", str(bundle(list(args), configure)), cid)
        return Files(f"execdriver/{cid}")
    return start


def _fails(runtime: Runtime, *args: str) -> str:
    result = runtime(*args, check=False)
    assert result.returncode == 1, (args, result)
    assert "Traceback" not in result.stderr
    return result.stderr


def test_the_common_limits_change_through_flags_and_json(runtime: Runtime, started: Callable[..., Files],
                                                         cid: str) -> None:
    files = started()
    assert files.memory()[0] == str(32 * MiB) and files.read("pids.max") == "20"
    if len(os.sched_getaffinity(0)) > 1:
        runtime("update", cid, "--cpuset-cpus", "1")  # flags after the id, as runc takes them
        assert files.read("cpuset.cpus") == "1"
    runtime("update", cid, "--memory", "67108864")
    assert files.memory()[0] == str(64 * MiB)
    runtime("update", cid, "--memory", "50M")  # go-units' sizes
    assert files.memory()[0] == str(50 * MiB)
    runtime("update", cid, "--memory-reservation", "32m")
    assert files.read("memory.soft_limit_in_bytes" if V1 else "memory.low") == str(32 * MiB)
    if SWAP:
        runtime("update", cid, "--memory-swap", "-1")
        assert files.memory() == (str(50 * MiB), UNLIMITED)
        runtime("update", cid, "--memory", "50M", "--memory-swap", "96468992")
        assert files.memory() == (str(50 * MiB), "96468992")
    runtime("update", cid, "--memory", "-1")  # lifts memory+swap too
    assert files.memory() == (UNLIMITED, UNLIMITED if SWAP else "")
    runtime("update", cid, "--pids-limit", "10")
    assert files.read("pids.max") == "10"
    runtime("update", cid, "--pids-limit", "-1")
    assert files.read("pids.max") == "max"
    back = '{"memory": {"limit": 33554432, "reservation": 25165824}, "CPU": {"Cpus": "0"}, "pids": {"limit": 20}}'
    runtime("update", "--pids-limit", "5", "-r", "-", cid, stdin=back)  # JSON: flags ignored, any case
    assert (files.memory()[0], files.read("pids.max"), files.read("cpuset.cpus")) == (str(32 * MiB), "20", "0")
    runtime("update", cid, "--cpu-period", "900000", "--cpu-quota", "600000", "--cpu-share", "200",
            "--memory", "67108864", "--memory-reservation", "33554432", "--pids-limit", "10")
    assert files.memory()[0] == str(64 * MiB) and files.read("pids.max") == "10"
    assert files.cpu() == ("600000", "900000")
    assert files.read("cpu.shares") == "200" if V1 else files.read("cpu.weight") == "8"
    if SWAP:  # memory and swap in the order the kernel takes them (runc's setMemoryAndSwap)
        runtime("update", cid, "--memory", "30M", "--memory-swap", "50M")
        assert files.memory() == (str(30 * MiB), str(50 * MiB))
        runtime("update", cid, "--memory", "60M", "--memory-swap", "80M")  # memory above the old swap
        assert files.memory() == (str(60 * MiB), str(80 * MiB))


def test_quota_or_period_alone_keeps_the_other(runtime: Runtime, started: Callable[..., Files], cid: str) -> None:
    files = started()
    assert files.cpu() == ("500000", "1000000")
    for flags, expected in ((("--cpu-period", "900000"), ("500000", "900000")),
                            (("--cpu-quota", "600000"), ("600000", "900000")),
                            (("--cpu-quota", "-1"), ("-1", "900000")),
                            (("--cpu-share", "200"), ("-1", "900000")),
                            (("--cpu-period", "900000", "--cpu-quota", "600000"), ("600000", "900000")),
                            (("--cpu-quota", "-1", "--cpu-period", "100000"), ("-1", "100000"))):
        runtime("update", cid, *flags)
        assert files.cpu() == expected, flags
    runtime("update", "--resources", "-", cid, stdin='{"cpu": {"shares": 100, "quota": 500000, "period": 1000000}}')
    assert files.cpu() == ("500000", "1000000")


def test_a_limit_left_out_keeps_its_value(runtime: Runtime, started: Callable[..., Files], cid: str) -> None:
    files = started()
    before = (files.memory(), files.cpu(), files.read("pids.max"))
    runtime("update", cid, "--cpuset-mems", "0")
    runtime("update", "-r", "-", cid, stdin='{"memory": {"limit": 0}, "pids": {"limit": 0}}')  # 0: unchanged
    assert (files.memory(), files.cpu(), files.read("pids.max")) == before


def test_bad_values_fail_in_runcs_words_and_change_nothing(runtime: Runtime, started: Callable[..., Files],
                                                          cid: str) -> None:
    files = started()
    before = (files.memory(), files.cpu(), files.read("pids.max"))
    for args, message in ((("--memory", "abc"), "invalid value for memory: invalid size: 'abc'"),
                          (("--memory-swap", "-2"), "invalid value for memory-swap: invalid size: '-2'"),
                          (("--cpu-period", "-1"), 'invalid value for cpu-period: strconv.ParseUint: parsing "-1"'),
                          (("--pids-limit", "abc"), 'invalid value "abc" for flag -pids-limit: parse error'),
                          (("--cpu-period", "100"), "resources.cpu_period: must lie between 1000 and 1000000")):
        assert message in _fails(runtime, "update", cid, *args)
    if V1:  # the kernel clamps cpu.shares: read back, as runc does, and the old value kept
        assert "resources.cpu_shares: the minimum allowed cpu-shares is 2" in _fails(
            runtime, "update", cid, "--cpu-share", "1")
        assert files.read("cpu.shares") == "100"
        if SWAP:  # memory above the memory+swap in place: refused, not raised behind the caller's back
            runtime("update", cid, "--memory-swap", "40M")
            assert "is above the memory+swap limit in place" in _fails(runtime, "update", cid, "--memory", "48M")
            runtime("update", cid, "--memory-swap", "-1")
    assert (files.memory(), files.cpu(), files.read("pids.max")) == before


@pytest.fixture()
def pod(cid: str) -> Iterator[str]:
    """A pod's parent cgroup, removed after the test in every hierarchy (the runtime made most of it).

    Asked before ``runtime``, so that it goes after the runtime's fixture has deleted the container.
    """
    name = f"execdriver-pod-{cid}"
    yield name
    from execdriver.linux.cgroups.v1 import hierarchies

    for mount in set(hierarchies().values()) if V1 else {cgroups.ROOT}:
        try:
            os.rmdir(os.path.join(mount, name))
        except OSError as err:
            assert err.errno == errno.ENOENT, err


@pytest.mark.skipif(not V1, reason="the kernel refuses a child over its parent's quota on cgroup v1 only")
def test_a_pods_quota_bounds_the_containers_and_a_shorter_period_goes_in(
        pod: str, runtime: Runtime, started: Callable[..., Files], cid: str) -> None:
    parent = cgroup_dir(pod, "cpu")
    parent.mkdir()
    (parent / "cpu.cfs_quota_us").write_text("50000")  # 50% of its 100 ms period
    files = started(change=lambda c: c["linux"].update(cgroupsPath=f"/{pod}/{cid}"))
    files.path = f"{pod}/{cid}"
    assert files.cpu() == ("500000", "1000000")  # 50%: as much as the pod has
    assert "cpu.cfs_quota_us: Invalid argument (quota / period may not exceed the parent cgroup's)" in _fails(
        runtime, "update", "--cpu-quota", "600000", cid)
    # The period first would put the old quota at 5000%: refused, then written after the quota (runc's retry).
    runtime("update", "--cpu-period", "10000", "--cpu-quota", "3000", cid)
    assert files.cpu() == ("3000", "10000")
    runtime("delete", "--force", cid)


@pytest.mark.skipif(not V1 or not (cgroup_dir("", "cpu") / "cpu.rt_runtime_us").exists(),
                    reason="real-time group scheduling is cgroup v1's, where the kernel has it")
def test_real_time_period_and_runtime(pod: str, runtime: Runtime, started: Callable[..., Files], cid: str) -> None:
    parent = cgroup_dir(pod, "cpu")
    parent.mkdir()
    (parent / "cpu.rt_runtime_us").write_text("100000")  # a new cgroup has none: room for the container's
    files = started({"cpu": {**START["cpu"], "realtimeRuntime": 10000}},
                    lambda c: c["linux"].update(cgroupsPath=f"/{pod}/{cid}"))
    files.path = f"{pod}/{cid}"
    assert (files.read("cpu.rt_period_us"), files.read("cpu.rt_runtime_us")) == ("1000000", "10000")
    runtime("update", "-r", "-", cid, stdin='{"cpu": {"realtimeRuntime": 50001}}')
    assert (files.read("cpu.rt_period_us"), files.read("cpu.rt_runtime_us")) == ("1000000", "50001")
    runtime("update", "-r", "-", cid, stdin='{"cpu": {"realtimePeriod": 800001, "realtimeRuntime": 40001}}')
    assert (files.read("cpu.rt_period_us"), files.read("cpu.rt_runtime_us")) == ("800001", "40001")
    runtime("update", cid, "--cpu-rt-period", "900001", "--cpu-rt-runtime", "60001")
    assert (files.read("cpu.rt_period_us"), files.read("cpu.rt_runtime_us")) == ("900001", "60001")
    runtime("delete", "--force", cid)


@pytest.mark.skipif(V1, reason="the refusal is a cgroup v2 host's (the guest runs this)")
def test_real_time_limits_are_refused_on_v2(runtime: Runtime, started: Callable[..., Files], cid: str) -> None:
    started()
    assert "cgroup v2 has no real-time bandwidth" in _fails(runtime, "update", cid, "--cpu-rt-runtime", "1000")


def test_update_leaves_the_device_rules_alone(runtime: Runtime, started: Callable[..., Files], tmp_path: Path,
                                             cid: str) -> None:
    """Rewriting the rules would deny every device for a moment: a process opening /dev/null then fails."""
    out = tmp_path / "out"
    out.mkdir()
    mount = {"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind", "rw"]}
    loop = ("while :; do : >/dev/null || echo null >>/out/log; "
            "head -c1 /dev/zero >/dev/null || echo zero >>/out/log; done")
    files = started(change=lambda c: c["mounts"].append(mount), args=("sh", "-c", loop))
    rules = files.read("devices.list") if V1 else ""
    for _ in range(30):
        runtime("update", "--pids-limit", "30", cid)
    time.sleep(0.1)
    assert not (out / "log").exists(), (out / "log").read_text()
    assert (files.read("devices.list") if V1 else "") == rules


def test_a_paused_container_stays_paused(runtime: Runtime, started: Callable[..., Files], cid: str) -> None:
    files = started()
    runtime("pause", cid)
    runtime("update", "--pids-limit", "30", cid)
    assert runtime.state(cid)["status"] == "paused" and files.read("pids.max") == "30"
    runtime("resume", cid)


@pytest.mark.skipif(V1 or not os.path.exists("/run/systemd/system"),
                    reason="the systemd cgroup driver needs systemd as pid 1 and cgroup v2 (the guest runs this)")
def test_a_scope_keeps_what_update_sets_as_unit_properties(runtime: Runtime, started: Callable[..., Files],
                                                           cid: str) -> None:
    """update.bats' check_systemd_value: systemd holds each limit too, or would put the old one back."""
    import subprocess

    unit = f"execdriver-test-{cid}.scope"

    def shown(*names: str) -> list[str]:
        return [subprocess.run(["systemctl", "show", "--property", name, "--value", unit], capture_output=True,
                               text=True, check=True, timeout=30).stdout.strip() for name in names]

    def update(*args: str, stdin: str | None = None) -> None:
        runtime("--systemd-cgroup", "update", *args, cid, stdin=stdin)

    started(None, lambda c: c["linux"].update(cgroupsPath=f"system.slice:execdriver-test:{cid}"), ("sleep", "600"),
            "--systemd-cgroup")
    try:
        assert shown("CPUQuotaPerSecUSec", "CPUQuotaPeriodUSec", "MemoryMax", "TasksMax") == [
            "500ms", "1s", str(32 * MiB), "20"]
        update("--cpu-period", "900000")
        assert shown("CPUQuotaPerSecUSec", "CPUQuotaPeriodUSec") == ["560ms", "900ms"]  # the quota kept
        update("--cpu-quota", "-1")
        assert shown("CPUQuotaPerSecUSec", "CPUQuotaPeriodUSec") == ["infinity", "900ms"]
        update("--memory", "-1", "--pids-limit", "-1", "--cpu-share", "200")
        assert shown("MemoryMax", "MemorySwapMax", "TasksMax", "CPUWeight") == ["infinity"] * 3 + ["8"]
        update("-r", "-", stdin='{"unified": {"cpu.max": "max 100000", "cpu.weight": "16", "pids.max": "10"}}')
        assert shown("CPUQuotaPerSecUSec", "CPUWeight", "TasksMax") == ["infinity", "16", "10"]
        if len(os.sched_getaffinity(0)) > 1:
            update("-r", "-", stdin='{"CPU": {"Cpus": "1"}}')
            assert shown("AllowedCPUs") == ["1"]
    finally:
        runtime("--systemd-cgroup", "delete", "--force", cid)


def test_a_stopped_or_missing_container_is_refused_in_runcs_words(runtime: Runtime, started: Callable[..., Files],
                                                                  cid: str) -> None:
    started(args=("true",))
    deadline = time.monotonic() + 10
    while runtime.state(cid)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert _fails(runtime, "update", "--pids-limit", "5", cid).strip().endswith("container not running")
    assert _fails(runtime, "update", "--pids-limit", "5", f"{cid}-x").strip().endswith(
        f"container {cid}-x does not exist")
