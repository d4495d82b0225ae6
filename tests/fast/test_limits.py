"""execdriver/linux/cgroups: Limits and the refusals of Limits.check(); the device rules (linux/devices.py)."""

from __future__ import annotations

from typing import Any

import pytest

from execdriver.errors import ConfigError
from execdriver.linux.cgroups import THROTTLES, Limits
from execdriver.linux.devices import ALLOW_ALL_DEVICES, DEFAULT_DEVICE_RULES, DEFAULT_DEVICES, device_rules

pytestmark = pytest.mark.fast

MiB = 1024 * 1024


def test_defaults_mean_unset() -> None:
    limits = Limits()
    assert [getattr(limits, name) for name in Limits.FIELDS] == [
        0, 0, 0, 0, 0, 0, "", "", 0, 0, False, -1, 0, [], [], 0, [], [], 0, 0]
    limits.check()


def test_unknown_limits_are_refused() -> None:
    with pytest.raises(TypeError, match=r"unknown limits \['memroy'\]"):
        Limits(memroy=1)


def test_sequences_become_lists_of_tuples() -> None:
    limits = Limits(device_rules=[["allow", "c 1:3 rwm"]], blkio_throttle=[["read_bps", 8, 0, 100]],
                    hugepage_limits=[["2MB", 0]], unified=(("memory.high", "1M"),))
    assert limits.device_rules == [("allow", "c 1:3 rwm")]
    assert limits.blkio_throttle == [("read_bps", 8, 0, 100)]
    assert limits.hugepage_limits == [("2MB", 0)]
    assert limits.unified == [("memory.high", "1M")]


@pytest.mark.parametrize("values", [
    {"memory": 6 * MiB},
    {"memory": 64 * MiB, "memory_swap": 64 * MiB},
    {"memory": 64 * MiB, "memory_swap": -1},
    {"memory_swap": -1},
    {"cpu_quota": -1},
    {"cpu_quota": 1000, "cpu_period": 1000},
    {"cpu_period": 1_000_000},
    {"memory_swappiness": 0},
    {"memory_swappiness": 100},
    {"blkio_weight": 10},
    {"blkio_weight": 1000},
    {"cpu_idle": 1},
    {"blkio_throttle": [(kind, 8, 0, 0) for kind in THROTTLES]},
    {"hugepage_limits": [("2MB", 0), ("1GB", 1 << 30), ("64KB", 1)]},
    {"unified": [("memory.high", "max"), ("io.bfq.weight", "100")]},
    {"cpuset_cpus": "0-2,4", "cpuset_mems": "0"},
    {"pids_limit": -1},
    {"memory": -1, "memory_reservation": -1, "memory_swap": -1},  # -1: unlimited, as runc takes it
    {"memory": -1},
    {"cpu_quota": -5},  # any negative quota: unlimited (the kernel's -1)
    {"cpu_rt_period": 1_000_000, "cpu_rt_runtime": -1},
])
def test_values_a_kernel_takes_pass(values: dict[str, Any]) -> None:
    Limits(**values).check()


def test_an_update_may_give_swap_alone() -> None:
    """The memory limit in place stays: cgroup v1 checks memsw against it (and v2 refuses, as runc)."""
    Limits(memory_swap=96 * MiB).check(update=True)
    with pytest.raises(ConfigError, match=r"^resources\.memory_swap: needs resources\.memory$"):
        Limits(memory_swap=96 * MiB).check()


@pytest.mark.parametrize(("values", "message"), [
    ({"memory": -2}, r"^resources\.memory: must not be negative \(but -1, unlimited\)$"),
    ({"memory_reservation": -2}, r"^resources\.memory_reservation: must not be negative \(but -1"),
    ({"memory_swap": -2}, r"^resources\.memory_swap: must not be negative \(but -1"),
    ({"cpu_rt_runtime": -2}, r"^resources\.cpu_rt_runtime: must not be negative \(but -1"),
    ({"cpu_shares": -2}, r"^resources\.cpu_shares: must not be negative$"),
    ({"cpu_period": -1}, r"^resources\.cpu_period: must not be negative$"),
    ({"cpu_rt_period": -1}, r"^resources\.cpu_rt_period: must not be negative$"),
    ({"memory": -1, "memory_swap": 64 * MiB}, r"^resources\.memory_swap: must be -1 \(unlimited\) when "),
    ({"memory": 6 * MiB - 1}, r"^resources\.memory: the minimum is 6 MiB$"),
    ({"memory": 64 * MiB, "memory_swap": 32 * MiB}, r"^resources\.memory_swap: must be at least resources\.memory"),
    ({"memory_swap": 64 * MiB}, r"^resources\.memory_swap: needs resources\.memory$"),
    ({"cpu_period": 999}, r"^resources\.cpu_period: must lie between 1000 and 1000000"),
    ({"cpu_period": 1_000_001}, r"^resources\.cpu_period: must lie between"),
    ({"cpu_quota": 999}, r"^resources\.cpu_quota: the minimum is 1000 microseconds$"),
    ({"memory_swappiness": 101}, r"^resources\.memory_swappiness: must lie between 0 and 100$"),
    ({"memory_swappiness": -2}, r"^resources\.memory_swappiness: must lie between 0 and 100$"),
    ({"blkio_throttle": [("read_bytes", 8, 0, 1)]}, r"^resources\.blkio_throttle: read_bytes 8:0 1 is not a throttle$"),
    ({"blkio_throttle": [("read_bps", -1, 0, 1)]}, r"^resources\.blkio_throttle: read_bps -1:0 1 is not a throttle$"),
    ({"blkio_throttle": [("write_iops", 8, 0, -1)]}, r"^resources\.blkio_throttle: write_iops 8:0 -1 is not"),
    ({"blkio_weight": 9}, r"^resources\.blkio_weight: must lie between 10 and 1000$"),
    ({"blkio_weight": 1001}, r"^resources\.blkio_weight: must lie between 10 and 1000$"),
    ({"cpu_idle": 2}, r"^resources\.cpu_idle: 0 or 1$"),
    ({"hugepage_limits": [("2M", 1)]}, r"^resources\.hugepage_limits: 2M 1 is not a page size"),
    ({"hugepage_limits": [("MB", 1)]}, r"^resources\.hugepage_limits: MB 1 is not a page size"),
    ({"hugepage_limits": [("2MB", -1)]}, r"^resources\.hugepage_limits: 2MB -1 is not a page size"),
    ({"unified": [("memoryhigh", "1")]}, r"^resources\.unified: 'memoryhigh' is not a controller's file"),
    ({"unified": [("cgroup.procs", "1")]}, r"^resources\.unified: 'cgroup\.procs' is not a controller's file"),
    ({"unified": [("cgroup.subtree_control", "+cpu")]}, r"the cgroup\.\* files are the runtime's$"),
    ({"unified": [("../memory.max", "1")]}, r"^resources\.unified: '\.\./memory\.max' is not"),
    ({"unified": [("..", "1")]}, r"^resources\.unified: '\.\.' is not"),
    ({"cpuset_cpus": "0-2,a"}, r"^resources\.cpuset_cpus: '0-2,a' is not a list like '0-2,4'$"),
    ({"cpuset_cpus": "0,,1"}, r"^resources\.cpuset_cpus: '0,,1' is not a list"),
    ({"cpuset_mems": "0-1-2"}, r"^resources\.cpuset_mems: '0-1-2' is not a list"),
])
def test_check_refuses(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Limits(**values).check()


@pytest.mark.parametrize("values", [{"cpuset_cpus": "-3"}, {"cpuset_cpus": "3-"}, {"unified": [(".max", "1")]}])
def test_check_refuses_malformed_lists_and_names(values: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Limits(**values).check()


def test_device_rules_put_the_containers_first_and_the_defaults_last() -> None:
    own = [("deny", "c 1:3 rwm"), ("allow", "b 8:0 r")]
    rules = device_rules(own)
    assert rules[:2] == own
    assert rules[2:] == list(DEFAULT_DEVICE_RULES)
    assert device_rules([]) == list(DEFAULT_DEVICE_RULES)


def test_default_device_rules_are_runcs() -> None:
    assert set(DEFAULT_DEVICE_RULES) == {
        ("allow", "c *:* m"), ("allow", "b *:* m"),
        ("allow", "c 1:3 rwm"), ("allow", "c 1:5 rwm"), ("allow", "c 1:7 rwm"), ("allow", "c 1:8 rwm"),
        ("allow", "c 1:9 rwm"), ("allow", "c 5:0 rwm"), ("allow", "c 5:1 rwm"), ("allow", "c 5:2 rwm"),
        ("allow", "c 136:* rwm"), ("allow", "c 10:200 rwm"),
    }
    assert len(DEFAULT_DEVICE_RULES) == 12
    assert ALLOW_ALL_DEVICES == (("allow", "a"),)


def test_every_default_device_node_is_allowed_by_a_default_rule() -> None:
    allowed = {rule for verdict, rule in DEFAULT_DEVICE_RULES if verdict == "allow"}
    assert [device.path for device in DEFAULT_DEVICES] == [
        "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"]
    for device in DEFAULT_DEVICES:
        assert device.kind == "c" and device.mode == 0o666 and (device.uid, device.gid) == (0, 0)
        assert f"c {device.major}:{device.minor} rwm" in allowed, device
    assert DEFAULT_DEVICES[0].wire() == ("/dev/null", "c", 1, 3, 0o666, 0, 0)
