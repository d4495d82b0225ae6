"""`update`'s values as runc reads them: go-units' sizes, Go's integers, urfave/cli's flag order, --resources.

The expected values and messages are those of runc 1.1.5's own code (go-units
0.4's RAMInBytes, strconv, urfave/cli 1.22), run on the same inputs.
"""

from __future__ import annotations

from typing import Any

import pytest

from execdriver.cli.flags import Flag, go_int, go_int_flag, parse, ram_in_bytes, reorder
from execdriver.cli.oci import update
from execdriver.errors import ConfigError
from execdriver.oci.config import resource_limits

pytestmark = pytest.mark.fast

MiB = 1 << 20


@pytest.mark.parametrize(("text", "expected"), [
    ("50M", 50 * MiB), ("1.5G", 1610612736), ("50MiB", 50 * MiB), ("50mb", 50 * MiB), ("1 M", MiB),
    ("1i", 1), ("1b", 1), ("1KB", 1024), ("1kib", 1024), ("1T", 1 << 40), ("2p", 2 << 50), ("5 ", 5),
    ("0", 0), ("010", 10), ("67108864", 64 * MiB),
    # Go's int64() of a float past int64's range gives its minimum (which check() then refuses).
    ("9223372036854775807", -(1 << 63)), ("99999999999999999999P", -(1 << 63)),
])
def test_sizes_as_go_units_reads_them(text: str, expected: int) -> None:
    assert ram_in_bytes(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("abc", "invalid size: 'abc'"), ("-1", "invalid size: '-1'"), ("1  M", "invalid size: '1  M'"),
    ("1.", "invalid size: '1.'"), (".5", "invalid size: '.5'"), ("1e3", "invalid size: '1e3'"),
    ("", "invalid size: ''"),
    ("1MM", "invalid size: '1MM'"), ("0x10", "invalid size: '0x10'"), ("+5", "invalid size: '+5'"),
    ("1.5.5", 'strconv.ParseFloat: parsing "1.5.5": invalid syntax'),
])
def test_bad_sizes_in_go_units_words(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        ram_in_bytes(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(("text", "unsigned", "expected"), [
    ("10", True, 10), ("010", True, 10), ("18446744073709551615", True, (1 << 64) - 1),
    ("-1", False, -1), ("+5", False, 5), ("9223372036854775807", False, (1 << 63) - 1),
    ("-1", True, 'strconv.ParseUint: parsing "-1": invalid syntax'),
    ("abc", False, 'strconv.ParseInt: parsing "abc": invalid syntax'),
    ("0x10", False, 'strconv.ParseInt: parsing "0x10": invalid syntax'),
    ("1_000", True, 'strconv.ParseUint: parsing "1_000": invalid syntax'),
    ("", True, 'strconv.ParseUint: parsing "": invalid syntax'),
    ("9223372036854775808", False, 'strconv.ParseInt: parsing "9223372036854775808": value out of range'),
    ("18446744073709551616", True, 'strconv.ParseUint: parsing "18446744073709551616": value out of range'),
    ("99999999999999999999P", True, 'strconv.ParseUint: parsing "99999999999999999999P": value out of range'),
])
def test_integers_as_strconv_reads_them(text: str, unsigned: bool, expected: int | str) -> None:
    if isinstance(expected, int):
        assert go_int(text, unsigned) == expected
        return
    with pytest.raises(ValueError) as caught:
        go_int(text, unsigned)
    assert str(caught.value) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("30", 30), ("-1", -1), ("0x10", 16), ("010", 8), ("0o10", 8), ("0b101", 5), ("1_000", 1000), ("+5", 5),
    ("abc", 'invalid value "abc" for flag -pids-limit: parse error'),
    ("08", 'invalid value "08" for flag -pids-limit: parse error'),
    ("_1", 'invalid value "_1" for flag -pids-limit: parse error'),
    ("9223372036854775808", 'invalid value "9223372036854775808" for flag -pids-limit: value out of range'),
])
def test_int_flags_as_urfave_reads_them(text: str, expected: int | str) -> None:
    if isinstance(expected, int):
        assert go_int_flag(text, "pids-limit") == expected
        return
    with pytest.raises(ValueError) as caught:
        go_int_flag(text, "pids-limit")
    assert str(caught.value) == expected


@pytest.mark.parametrize(("argv", "expected"), [
    (["test_update", "--cpuset-cpus", "1"], ["--cpuset-cpus", "1", "test_update"]),
    (["test_update", "--memory", "-1"], ["--memory", "-1", "test_update"]),  # a value may start with "-"
    (["ct", "--memory=1G", "x"], ["--memory=1G", "ct", "x"]),  # "=" takes no value after it
    (["-r", "-", "ct"], ["-r", "-", "ct"]),  # "-" alone is an argument, but a flag's value here
    # ... so, as with runc, flags after it take the wrong values: ["-r", "--pids-limit"] (give them first).
    (["-r", "-", "ct", "--pids-limit", "5"], ["-r", "--pids-limit", "5", "-", "ct"]),
    (["ct", "--", "--memory", "1"], ["ct", "--", "--memory", "1"]),
])
def test_reorder_moves_flags_before_arguments(argv: list[str], expected: list[str]) -> None:
    assert reorder(argv) == expected


def test_a_boolean_flag_gives_back_what_reorder_took_for_its_value() -> None:
    flags = (Flag("--force", "-f", kind="bool"), Flag("--memory", default=""))
    assert parse(flags, ["ct", "--force"], "update", reordered=True) == ({"force": True, "memory": ""}, ["ct"])
    # ... and what follows it stays arguments, as with runc (urfave/cli: "only works if all flags
    # appear after all arguments").
    assert parse(flags, ["--force", "ct", "--memory", "1G"], "update", reordered=True) == (
        {"force": True, "memory": ""}, ["ct", "--memory", "1G"])


def _options(**given: str) -> dict[str, object]:
    options: dict[str, object] = {flag.dest: flag.default for flag in update.FLAGS}
    options.update(given)
    return options


def test_update_flags_become_limits() -> None:
    assert parse(update.FLAGS, ["ct", "--cpu-shares", "7", "--cpu-share", "8"], "update", reordered=True)[0][
        "cpu_share"] == "8"  # (--cpu-shares is execdriver's older spelling)
    options = _options(memory="50M", memory_swap="-1", memory_reservation="1G", cpu_period="900000",
                       cpu_quota="-1", cpu_share="200", cpu_rt_period="800001", cpu_rt_runtime="500001",
                       pids_limit="-1", blkio_weight="500", cpuset_cpus="0-1", cpuset_mems="0")
    assert update._from_flags(options) == {
        "memory": 50 * MiB, "memory_reservation": 1 << 30, "memory_swap": -1, "cpu_period": 900000,
        "cpu_rt_period": 800001, "cpu_shares": 200, "cpu_quota": -1, "cpu_rt_runtime": 500001, "pids_limit": -1,
        "blkio_weight": 500, "cpuset_cpus": "0-1", "cpuset_mems": "0"}
    assert update._from_flags(_options(memory="0", pids_limit="0", kernel_memory="10M")) == {}  # 0: unchanged


@pytest.mark.parametrize(("given", "message"), [
    ({"memory": "abc"}, "invalid value for memory: invalid size: 'abc'"),
    ({"memory_swap": "-2"}, "invalid value for memory-swap: invalid size: '-2'"),
    ({"cpu_period": "-1"}, 'invalid value for cpu-period: strconv.ParseUint: parsing "-1": invalid syntax'),
    ({"cpu_share": "x"}, 'invalid value for cpu-share: strconv.ParseUint: parsing "x": invalid syntax'),
    ({"cpu_quota": "1.5"}, 'invalid value for cpu-quota: strconv.ParseInt: parsing "1.5": invalid syntax'),
    ({"pids_limit": "abc"}, 'invalid value "abc" for flag -pids-limit: parse error'),
    ({"l3_cache_schema": "L3:0=f"}, "Intel RDT/CAT: l3 cache schema: not supported by this runtime"),
])
def test_bad_update_values_in_runcs_words(given: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:  # (exit 1, as runc's; not a usage error's 2)
        update._from_flags(_options(**given))
    assert str(caught.value) == message


@pytest.mark.parametrize(("resources", "expected"), [
    ({"cpu": {"realtimeRuntime": 500001}}, {"cpu_rt_runtime": 500001}),
    ({"cpu": {"realtimePeriod": 800001, "realtimeRuntime": -1}}, {"cpu_rt_period": 800001, "cpu_rt_runtime": -1}),
    # Go's JSON matches a member to its name in any case, as runc reads config.json and --resources.
    ({"CPU": {"Cpus": "1", "MEMS": "0"}}, {"cpuset_cpus": "1", "cpuset_mems": "0"}),
    ({"Memory": {"Limit": -1, "Swap": -1}, "Pids": {"LIMIT": 20}}, {"memory": -1, "memory_swap": -1,
                                                                    "pids_limit": 20}),
    ({"cpu": {"cpus": "0"}, "CPU": {"cpus": "1"}}, {"cpuset_cpus": "1"}),  # the last wins
    ({"unified": {"CPU.max": "max"}}, {"unified": [("CPU.max", "max")]}),  # a map's keys are as given
])
def test_resources_json_as_runc_decodes_it(resources: dict[str, Any], expected: dict[str, Any]) -> None:
    assert resource_limits(resources) == expected
