"""execdriver/linux/seccomp.py: profiles compiled with libseccomp, no root needed (loading is the root tier's).

The compiled classic BPF program is run here by a small interpreter over a
seccomp_data of our making, so each test asks what the kernel would answer
to a system call: allowed, or which errno, trap, log or kill.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from execdriver.errors import ConfigError
from execdriver.linux import seccomp
from execdriver.linux.capabilities import DEFAULT, NUMBERS

pytestmark = pytest.mark.fast

try:
    _LIBSECCOMP: ctypes.CDLL | None = ctypes.CDLL("libseccomp.so.2")
except OSError:
    _LIBSECCOMP = None
needs_libseccomp = pytest.mark.skipif(_LIBSECCOMP is None, reason="libseccomp (libseccomp.so.2, Debian's "
                                      "libseccomp2) is not installed")

ALLOW = 0x7FFF0000
KILL_THREAD = 0x00000000
KILL_PROCESS = 0x80000000
TRAP = 0x00030000
LOG = 0x7FFC0000


def errno_action(number: int) -> int:
    """SECCOMP_RET_ERRNO with ``number``."""
    return 0x00050000 | number


def _nr(name: str) -> int:
    assert _LIBSECCOMP is not None
    number = int(_LIBSECCOMP.seccomp_syscall_resolve_name(name.encode()))
    assert number >= 0, name
    return number


def _native_arch() -> int:
    assert _LIBSECCOMP is not None
    _LIBSECCOMP.seccomp_arch_native.restype = ctypes.c_uint32
    return int(_LIBSECCOMP.seccomp_arch_native())


def run_filter(program: bytes, nr: int, args: Sequence[int] = (), arch: int | None = None) -> int:
    """What classic BPF ``program`` returns for a system call (the kernel's seccomp_data, host byte order)."""
    data = struct.pack("=iIQ6Q", nr, _native_arch() if arch is None else arch, 0,
                       *[*args, *[0] * (6 - len(args))])
    assert len(program) % 8 == 0 and program
    code_of = [struct.unpack_from("=HBBI", program, offset) for offset in range(0, len(program), 8)]
    a = x = pc = 0
    memory = [0] * 16
    for _ in range(100_000):
        code, jt, jf, k = code_of[pc]
        pc += 1
        kind = code & 0x07
        if kind in (0, 1):  # LD, LDX
            mode = code & 0xE0
            if mode == 0x20 and code & 0x18 == 0 and kind == 0:  # ABS, a word
                value = struct.unpack_from("=I", data, k)[0]
            elif mode == 0x00:
                value = k
            elif mode == 0x60:
                value = memory[k]
            elif mode == 0x80:
                value = len(data)
            else:
                raise AssertionError(f"load {code:#x}")
            if kind == 0:
                a = value
            else:
                x = value
        elif kind == 2:  # ST
            memory[k] = a
        elif kind == 3:  # STX
            memory[k] = x
        elif kind == 4:  # ALU
            operand = x if code & 0x08 else k
            operations = {0x00: int.__add__, 0x10: int.__sub__, 0x20: int.__mul__, 0x40: int.__or__,
                          0x50: int.__and__, 0x60: lambda a, n: a << (n & 31), 0x70: int.__rshift__,
                          0x80: lambda a, _: -a, 0xA0: int.__xor__}
            a = operations[code & 0xF0](a, operand) & 0xFFFFFFFF
        elif kind == 5:  # JMP
            op = code & 0xF0
            if op == 0x00:
                pc += k
                continue
            operand = x if code & 0x08 else k
            taken = {0x10: a == operand, 0x20: a > operand, 0x30: a >= operand, 0x40: bool(a & operand)}[op]
            pc += jt if taken else jf
        elif kind == 6:  # RET
            return int({0x00: k, 0x08: x, 0x10: a}[code & 0x18])
        elif code & 0xF8 == 0x00:  # MISC: TAX
            x = a
        else:  # TXA
            a = x
    raise AssertionError("the filter did not return")


def _verdict(program: bytes, name: str, *args: int) -> int:
    return run_filter(program, _nr(name), args)


# --- OCI profiles ---------------------------------------------------------------------------------


@needs_libseccomp
def test_an_oci_profile_judges_each_call() -> None:
    program = seccomp.compile_oci({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.ENOSYS,
        "syscalls": [
            {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES},
            {"names": ["getpid"], "action": "SCMP_ACT_TRAP"},
            {"names": ["getppid"], "action": "SCMP_ACT_LOG"},
            {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["tkill"], "action": "SCMP_ACT_KILL"},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},  # AF_UNIX alone
            {"names": ["no_such_call_anywhere"], "action": "SCMP_ACT_ALLOW"},  # unknown here: skipped, as runc
            {"names": ["openat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},  # the default: no rule
        ]})
    assert _verdict(program, "read") == ALLOW
    assert _verdict(program, "write") == ALLOW
    assert _verdict(program, "mkdir") == errno_action(errno.EACCES)
    assert _verdict(program, "getpid") == TRAP
    assert _verdict(program, "getppid") == LOG
    assert _verdict(program, "kill") == KILL_PROCESS
    assert _verdict(program, "tkill") == KILL_THREAD
    assert _verdict(program, "socket", 1) == ALLOW
    assert _verdict(program, "socket", 2) == errno_action(errno.ENOSYS)
    assert _verdict(program, "openat") == errno_action(errno.ENOSYS)
    assert _verdict(program, "chdir") == errno_action(errno.ENOSYS)


@needs_libseccomp
def test_a_call_newer_than_the_profile_gets_enosys_as_with_runc() -> None:
    """runc's -ENOSYS stub: past the highest call the profile names, ENOSYS, so that libc falls back."""
    profile = {"defaultAction": "SCMP_ACT_ERRNO",
               "syscalls": [{"names": ["read", "write", "kcmp"], "action": "SCMP_ACT_ALLOW"}]}
    program = seccomp.compile_oci(profile)
    assert _verdict(program, "read") == ALLOW
    assert _verdict(program, "mkdir") == errno_action(errno.EPERM)  # known to the profile's range: its default
    assert run_filter(program, _nr("kcmp") + 1) == errno_action(errno.ENOSYS)
    assert run_filter(program, 1000) == errno_action(errno.ENOSYS)
    assert run_filter(program, 0x40000000 | 1000) != errno_action(errno.ENOSYS)  # x32's: libseccomp's verdict
    # Not where the default allows, nor where it says ENOSYS itself.
    for default in ({"defaultAction": "SCMP_ACT_ALLOW"}, {"defaultAction": "SCMP_ACT_LOG"}):
        assert run_filter(seccomp.compile_oci({**profile, **default}), 1000) != errno_action(errno.ENOSYS)


@needs_libseccomp
def test_a_call_of_another_architecture_is_killed() -> None:
    program = seccomp.compile_oci({"defaultAction": "SCMP_ACT_ALLOW"})
    assert run_filter(program, _nr("read")) == ALLOW
    assert run_filter(program, _nr("read"), arch=0x12345678) == KILL_THREAD


@needs_libseccomp
def test_errno_without_errnoret_is_eperm() -> None:
    program = seccomp.compile_oci({"defaultAction": "SCMP_ACT_ERRNO",
                                   "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                                                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]})
    assert _verdict(program, "chdir") == errno_action(errno.EPERM)
    assert _verdict(program, "mkdir") == errno_action(errno.EPERM)


@needs_libseccomp
def test_several_comparisons_of_one_argument_mean_any_of_them() -> None:
    # personality in Docker's and Podman's profiles: 0, 8, 0x20000, 0x20008 or 0xffffffff.
    program = seccomp.compile_oci({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        {"names": ["mmap"], "action": "SCMP_ACT_ALLOW",  # two arguments: both must hold
         "args": [{"index": 2, "value": 4, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"},
                  {"index": 0, "value": 4096, "op": "SCMP_CMP_GE"}]},
    ]})
    assert _verdict(program, "personality", 0) == ALLOW
    assert _verdict(program, "personality", 8) == ALLOW
    assert _verdict(program, "personality", 1) == errno_action(errno.EPERM)
    assert _verdict(program, "mmap", 8192, 0, 3) == ALLOW  # PROT_READ|PROT_WRITE: no PROT_EXEC
    assert _verdict(program, "mmap", 8192, 0, 7) == errno_action(errno.EPERM)  # PROT_EXEC
    assert _verdict(program, "mmap", 0, 0, 3) == errno_action(errno.EPERM)


@needs_libseccomp
def test_a_rule_repeating_the_default_is_dropped_not_refused() -> None:
    program = seccomp.compile_oci({"defaultAction": "SCMP_ACT_ALLOW",
                                   "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]})
    assert _verdict(program, "read") == ALLOW


@needs_libseccomp
def test_architectures_are_added() -> None:
    native = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}.get(os.uname().machine)
    if native is None:
        pytest.skip(f"no test architectures for {os.uname().machine}")
    program = seccomp.compile_oci({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [native, "SCMP_ARCH_X86"],
                                   "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]})
    assert _verdict(program, "mkdir") == errno_action(errno.EPERM)
    if native == "SCMP_ARCH_X86_64":  # i386's mkdir is 39, its arch AUDIT_ARCH_I386
        assert run_filter(program, 39, arch=0x40000003) == errno_action(errno.EPERM)
        assert run_filter(program, 3, arch=0x40000003) == ALLOW  # i386's read


@needs_libseccomp
@pytest.mark.parametrize(("profile", "message"), [
    ({"defaultAction": "SCMP_ACT_NOTIFY"},
     r"^linux\.seccomp\.defaultAction: SCMP_ACT_NOTIFY cannot be used as default action"),
    ({}, r"^linux\.seccomp\.defaultAction: unknown action ''"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]},
     r"^linux\.seccomp\.listenerPath: SCMP_ACT_NOTIFY needs the agent's socket"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock",
      "syscalls": [{"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]},
     r"^linux\.seccomp\.syscalls\[0\]: SCMP_ACT_NOTIFY cannot be used for the write syscall"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"]},
     r"^linux\.seccomp\.flags: not supported"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]},
     r"^linux\.seccomp\.architectures: unknown architecture 'SCMP_ARCH_VAX'$"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]},
     r"^linux\.seccomp\.syscalls\[0\]: needs names, a list of system calls$"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": "read", "action": "SCMP_ACT_ERRNO"}]},
     r"^linux\.seccomp\.syscalls\[0\]: needs names"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERR"}]},
     r"^linux\.seccomp\.syscalls\[0\]\.action: unknown action 'SCMP_ACT_ERR'"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_IS"}]}]},
     r"^linux\.seccomp\.syscalls\[0\]\.args\[0\]: needs index, value and a SCMP_CMP_\* op$"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": "x", "op": "SCMP_CMP_EQ"}]}]},
     r"^linux\.seccomp: malformed profile: "),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
     r"^linux\.seccomp\.syscalls\[0\]: read: libseccomp refused the rule"),  # no seventh argument
])
def test_oci_refusals_name_the_field(profile: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        seccomp.compile_oci(profile)


NOTIFY = 0x7FC00000


@needs_libseccomp
def test_notify_rules_compile_to_user_notif_and_say_so() -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
               "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}
    program = seccomp.compile_oci(profile)
    assert _verdict(program, "mkdir") == NOTIFY and _verdict(program, "read") == ALLOW
    assert seccomp.notifies(profile) and not seccomp.notifies({"defaultAction": "SCMP_ACT_ALLOW",
                                                                "listenerPath": "/run/agent.sock"})


# --- Docker's format ---------------------------------------------------------------------------


def test_docker_to_oci_resolves_capabilities_architectures_and_kernels() -> None:
    goarch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine)
    if goarch is None:
        pytest.skip(f"seccomp.py knows no Go architecture for {os.uname().machine}")
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_MIPS"],
        "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
            {"name": "write", "action": "SCMP_ACT_ALLOW"},  # the old single-name form
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]},
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
            {"names": ["s390_only"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["s390x"]}},
            {"names": ["here"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": [goarch]}},
            {"names": ["not_here"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": [goarch]}},
            {"names": ["future"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
            {"names": ["past"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38, "includes": {"minKernel": "3.10"}},
        ]}
    plain = seccomp.docker_to_oci(profile, {"CAP_CHOWN"})
    assert plain["defaultAction"] == "SCMP_ACT_ERRNO" and plain["defaultErrnoRet"] == 1
    assert plain["architectures"] == ["SCMP_ARCH_MIPS"]  # no archMap: the profile's own
    assert [rule["names"] for rule in plain["syscalls"]] == [["read"], ["write"], ["clone"], ["here"], ["past"]]
    assert plain["syscalls"][2]["args"] == [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]
    assert plain["syscalls"][-1]["errnoRet"] == 38 and "errnoRet" not in plain["syscalls"][0]
    admin = seccomp.docker_to_oci(profile, {"CAP_SYS_ADMIN"})
    assert [rule["names"] for rule in admin["syscalls"]] == [["read"], ["write"], ["mount"], ["here"], ["past"]]


def test_docker_to_oci_takes_this_machines_arch_map() -> None:
    native = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}.get(os.uname().machine)
    if native is None:
        pytest.skip(f"no archMap entry for {os.uname().machine}")
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "archMap": [
        {"architecture": "SCMP_ARCH_S390X", "subArchitectures": ["SCMP_ARCH_S390"]},
        {"architecture": native, "subArchitectures": ["SCMP_ARCH_X86"]}]}
    assert seccomp.docker_to_oci(profile, set())["architectures"] == [native, "SCMP_ARCH_X86"]


@pytest.mark.parametrize(("profile", "message"), [
    ({"syscalls": ["read"]}, r"^seccomp_profile\.syscalls\[0\]: expected an object$"),
    ({"syscalls": [{"names": ["x"], "includes": ["caps"]}]}, r"^seccomp_profile: malformed profile: "),
    ({"syscalls": [{"names": ["x"], "includes": {"minKernel": "four"}}]}, r"^seccomp_profile: malformed profile: "),
    ({"archMap": ["x"]}, r"^seccomp_profile: malformed profile: "),
])
def test_docker_format_refusals(profile: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        seccomp.docker_to_oci(profile, set())


# --- the default profile, and program() ------------------------------------------------------------


def _caps(*names: str) -> list[int]:
    return sorted({*DEFAULT, *(NUMBERS[name] for name in names)})


needs_default_profile = pytest.mark.skipif(not os.path.exists(seccomp.DEFAULT_PROFILE), reason=(
    f"{seccomp.DEFAULT_PROFILE} (Debian's golang-github-containers-common) is not installed"))

CLONE_NEWUSER, CLONE_NEWNS, SIGCHLD, CLONE_THREAD_FLAGS = 0x10000000, 0x00020000, 17, 0x003D0F00


@needs_libseccomp
@needs_default_profile
def test_dockers_default_for_dockers_default_capabilities() -> None:
    program = seccomp.program("", list(DEFAULT))
    assert program is not None
    assert _verdict(program, "read") == ALLOW
    assert _verdict(program, "execve") == ALLOW
    assert _verdict(program, "clone", SIGCHLD) == ALLOW  # fork
    assert _verdict(program, "clone", CLONE_THREAD_FLAGS) == ALLOW  # a thread
    for flags in (CLONE_NEWUSER | SIGCHLD, CLONE_NEWNS | SIGCHLD):
        assert _verdict(program, "clone", flags) == errno_action(errno.EPERM), hex(flags)
    assert _verdict(program, "clone3") == errno_action(errno.ENOSYS)  # libc falls back to clone
    for name in ("mount", "umount2", "unshare", "setns", "open_tree", "fsopen", "syslog", "reboot", "mbind",
                 "keyctl", "add_key", "request_key", "pivot_root", "pidfd_getfd"):
        assert _verdict(program, name) == errno_action(errno.EPERM), name
    assert _verdict(program, "personality", 0) == ALLOW
    assert _verdict(program, "personality", 1) == errno_action(errno.EPERM)
    assert _verdict(program, "init_module") == errno_action(errno.EPERM)  # Docker's default errno, not Podman's ENOSYS


@needs_libseccomp
@needs_default_profile
def test_dockers_default_gives_back_what_a_capability_allows() -> None:
    admin = seccomp.program("", _caps("CAP_SYS_ADMIN"))
    assert admin is not None
    for name in ("mount", "umount2", "unshare", "setns", "clone3"):
        assert _verdict(admin, name) == ALLOW, name
    assert _verdict(admin, "clone", CLONE_NEWUSER | SIGCHLD) == ALLOW
    for name in ("keyctl", "pivot_root"):  # never, whatever the capabilities
        assert _verdict(admin, name) == errno_action(errno.EPERM), name
    nice = seccomp.program("", _caps("CAP_SYS_NICE", "CAP_SYS_BOOT", "CAP_SYSLOG"))
    assert nice is not None
    for name in ("mbind", "set_mempolicy", "reboot", "syslog"):
        assert _verdict(nice, name) == ALLOW, name
    assert _verdict(nice, "mount") == errno_action(errno.EPERM)


@needs_libseccomp
def test_program_of_a_docker_profile_text() -> None:
    profile = json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_DAC_OVERRIDE"]}}]})
    without = seccomp.program(profile, [NUMBERS["CAP_CHOWN"]])
    with_cap = seccomp.program(profile, [NUMBERS["CAP_DAC_OVERRIDE"]])
    assert without is not None and with_cap is not None
    assert _verdict(without, "mkdir") == errno_action(errno.EPERM)
    assert _verdict(with_cap, "mkdir") == ALLOW
    assert seccomp.program(profile, [NUMBERS["CAP_CHOWN"]]) is without  # kept in memory


def test_unconfined_is_no_program() -> None:
    assert seccomp.program(seccomp.UNCONFINED, list(DEFAULT)) is None


@pytest.mark.parametrize(("profile", "message"), [
    ("{", r"^seccomp_profile: not a JSON profile \("),
    ("[]", r"^seccomp_profile: not a JSON profile \(expected an object\)$"),
    ('"unconfined "', r"not a JSON profile \(expected an object\)"),
])
def test_program_refuses_what_is_no_profile(profile: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        seccomp.program(profile, [])


@needs_libseccomp
@needs_default_profile
def test_programs_of_the_default_are_kept_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seccomp, "_programs", {})
    cache = tmp_path / "cache"
    first = seccomp.program("", list(DEFAULT), cache_dir=str(cache))
    assert first is not None
    files = os.listdir(cache)
    assert len(files) == 1 and files[0].startswith("tree-") and files[0].endswith(".bpf")
    assert (cache / files[0]).read_bytes() == first
    assert cache.stat().st_mode & 0o777 == 0o700
    monkeypatch.setattr(seccomp, "_programs", {})  # another process: it reads the file, compiles nothing
    (cache / files[0]).write_bytes(b"marker!!")
    assert seccomp.program("", list(DEFAULT), cache_dir=str(cache)) == b"marker!!"
    seccomp.program("", _caps("CAP_SYS_ADMIN"), cache_dir=str(cache))
    assert len(os.listdir(cache)) == 2  # one per set of capabilities


@needs_libseccomp
def test_oci_programs_are_kept_on_disk_by_profile(tmp_path: Path) -> None:
    """An engine gives every container the same profile: each create after the first reads it."""
    cache = tmp_path / "cache"
    profile: dict[str, Any] = {"defaultAction": "SCMP_ACT_ERRNO",
                               "syscalls": [{"names": ["read", "exit_group"], "action": "SCMP_ACT_ALLOW"}]}
    first = seccomp.compile_oci(profile, cache_dir=str(cache))
    assert first == seccomp.compile_oci(profile)  # the program itself, as without a cache
    (name,) = os.listdir(cache)
    assert name.startswith("oci-") and name.endswith(".bpf") and (cache / name).read_bytes() == first
    assert cache.stat().st_mode & 0o777 == 0o700 and (cache / name).stat().st_mode & 0o777 == 0o600
    (cache / name).write_bytes(b"marker!!")  # read, not compiled again
    assert seccomp.compile_oci(profile, cache_dir=str(cache)) == b"marker!!"
    (cache / name).write_bytes(b"torn")  # not whole instructions: compiled again, and kept
    assert seccomp.compile_oci(profile, cache_dir=str(cache)) == first == (cache / name).read_bytes()
    other = {**profile, "defaultAction": "SCMP_ACT_KILL"}
    assert seccomp.compile_oci(other, cache_dir=str(cache)) != first
    assert len(os.listdir(cache)) == 2  # one per profile
    with pytest.raises(ConfigError, match=r"linux.seccomp.defaultAction: unknown action"):
        seccomp.compile_oci({"defaultAction": "SCMP_ACT_NOPE"}, cache_dir=str(cache))  # refused, not cached
    assert len(os.listdir(cache)) == 2


@needs_libseccomp
def test_the_oci_cache_keeps_the_newest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seccomp, "_CACHE_SIZE", 3)
    cache = tmp_path / "cache"
    for errno_ret in range(1, 6):
        seccomp.compile_oci({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno_ret,
                             "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}, cache_dir=str(cache))
    assert len(os.listdir(cache)) == 3
