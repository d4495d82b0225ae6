"""execdriver/linux/capabilities.py: names and numbers, Docker's default set, cap_add and cap_drop."""

from __future__ import annotations

import os

import pytest

from execdriver.errors import ConfigError
from execdriver.linux import capabilities
from execdriver.linux.capabilities import DEFAULT, NAMES, NUMBERS, adjust

pytestmark = pytest.mark.fast

# linux/capability.h
KERNEL = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
    "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19, "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23, "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27, "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31, "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39, "CAP_CHECKPOINT_RESTORE": 40,
}
# Docker's default set (moby's oci/caps/defaults.go)
DOCKER = {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
          "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
          "CAP_AUDIT_WRITE"}


def _names(numbers: list[int]) -> set[str]:
    return {NAMES[number] for number in numbers}


@pytest.fixture()
def kernel_knows_all(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel whose last capability is the last we name (the host's may know more or fewer)."""
    monkeypatch.setattr(capabilities, "_last_cap", [len(NAMES) - 1])


def test_names_are_the_kernels_numbers() -> None:
    assert NUMBERS == KERNEL
    assert all(NAMES[number] == name for name, number in KERNEL.items())


def test_default_is_dockers_set() -> None:
    assert _names(list(DEFAULT)) == DOCKER
    assert len(DEFAULT) == len(set(DEFAULT)) == 14
    assert NUMBERS["CAP_SYS_ADMIN"] not in DEFAULT and NUMBERS["CAP_NET_ADMIN"] not in DEFAULT


def test_no_change_keeps_the_base_sorted() -> None:
    assert adjust(DEFAULT, None, None) == sorted(DEFAULT)
    assert adjust([5, 0, 3], [], []) == [0, 3, 5]


@pytest.mark.parametrize("spelling", ["NET_ADMIN", "CAP_NET_ADMIN", "net_admin", "cap_net_admin", "Cap_Net_Admin"])
def test_names_with_or_without_cap_in_any_case(spelling: str) -> None:
    assert _names(adjust(DEFAULT, [spelling], None)) == DOCKER | {"CAP_NET_ADMIN"}
    assert _names(adjust([*DEFAULT, NUMBERS["CAP_NET_ADMIN"]], None, [spelling])) == DOCKER


def test_add_and_drop() -> None:
    assert _names(adjust(DEFAULT, ["SYS_ADMIN", "SYS_PTRACE"], ["MKNOD", "NET_RAW"])) == (
        DOCKER - {"CAP_MKNOD", "CAP_NET_RAW"} | {"CAP_SYS_ADMIN", "CAP_SYS_PTRACE"})
    assert _names(adjust(DEFAULT, None, ["SYS_ADMIN"])) == DOCKER  # dropping what is not there


def test_drop_all_empties_the_set_before_add(kernel_knows_all: None) -> None:
    assert adjust(DEFAULT, None, ["ALL"]) == []
    assert _names(adjust(DEFAULT, ["NET_BIND_SERVICE"], ["all"])) == {"CAP_NET_BIND_SERVICE"}
    assert adjust(DEFAULT, ["ALL"], ["ALL"]) == list(range(len(NAMES)))


def test_add_all_keeps_everything_not_dropped(kernel_knows_all: None) -> None:
    assert adjust(DEFAULT, ["ALL"], None) == list(range(len(NAMES)))
    assert _names(adjust(DEFAULT, ["all"], ["SYS_ADMIN", "MKNOD"])) == set(NAMES) - {"CAP_SYS_ADMIN", "CAP_MKNOD"}


def test_add_all_gives_only_what_this_kernel_knows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capabilities, "_last_cap", [37])  # a 5.4 kernel: no PERFMON, BPF, CHECKPOINT_RESTORE
    assert adjust([], ["ALL"], None) == list(range(38))


def test_last_cap_is_the_kernels() -> None:
    with open("/proc/sys/kernel/cap_last_cap", encoding="utf-8") as handle:
        assert capabilities.last_cap() == int(handle.read())


@pytest.mark.parametrize(("add", "drop", "message"), [
    (["NET_ADMN"], None, r"^x\.cap_add\[0\]: unknown capability 'NET_ADMN'$"),
    (["CHOWN", "CAP_"], None, r"^x\.cap_add\[1\]: unknown capability 'CAP_'$"),
    (None, ["KILL", "SYS_ADMIN", ""], r"^x\.cap_drop\[2\]: unknown capability ''$"),
    (["CAP_CAP_CHOWN"], None, r"unknown capability 'CAP_CAP_CHOWN'"),
])
def test_unknown_names_are_refused_with_their_place(add: list[str] | None, drop: list[str] | None,
                                                    message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        adjust(DEFAULT, add, drop, where="x.")


def test_available_are_roots_permitted_capabilities_or_a_users_bounding_set() -> None:
    """What root holds; for a user, what root of a user namespace of its own would hold there."""
    wanted = "CapPrm:" if os.geteuid() == 0 else "CapBnd:"
    with open("/proc/self/status", encoding="utf-8") as handle:
        mask = next(int(line.split()[1], 16) for line in handle if line.startswith(wanted))
    assert sum(1 << cap for cap in capabilities.available()) == mask
