"""seccomp filters: an OCI ``linux.seccomp`` profile compiled with libseccomp, loaded by the init.

The profile is compiled once, in the runtime's process, into the classic
BPF program that libseccomp exports; the init only loads those bytes with
seccomp(2), as late as it can: right before exec when no_new_privileges is
set, otherwise before it gives up CAP_SYS_ADMIN (which loading needs).
Imported only for a container that has a profile.
"""

from __future__ import annotations

import ctypes
import errno
import os

from execdriver.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_ACT_KILL_PROCESS = 0x80000000
_ACT_KILL_THREAD = 0x00000000
_ACT_TRAP = 0x00030000
_ACT_ERRNO = 0x00050000
_ACT_TRACE = 0x7FF00000
_ACT_LOG = 0x7FFC0000
_ACT_ALLOW = 0x7FFF0000
_OPS = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
_ARCHES = {
    "SCMP_ARCH_X86": "x86", "SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_X32": "x32", "SCMP_ARCH_ARM": "arm",
    "SCMP_ARCH_AARCH64": "aarch64", "SCMP_ARCH_MIPS": "mips", "SCMP_ARCH_MIPS64": "mips64",
    "SCMP_ARCH_MIPS64N32": "mips64n32", "SCMP_ARCH_MIPSEL": "mipsel", "SCMP_ARCH_MIPSEL64": "mipsel64",
    "SCMP_ARCH_MIPSEL64N32": "mipsel64n32", "SCMP_ARCH_PPC": "ppc", "SCMP_ARCH_PPC64": "ppc64",
    "SCMP_ARCH_PPC64LE": "ppc64le", "SCMP_ARCH_S390": "s390", "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_RISCV64": "riscv64",
}


class _ArgCmp(ctypes.Structure):
    _fields_ = (("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64))


def _library() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        raise ConfigError("linux.seccomp: libseccomp (libseccomp2) is not installed") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = (ctypes.c_uint32,)
    lib.seccomp_release.argtypes = (ctypes.c_void_p,)
    lib.seccomp_arch_add.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_rule_add_array.argtypes = (ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp))
    lib.seccomp_attr_set.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32)
    lib.seccomp_export_bpf.argtypes = (ctypes.c_void_p, ctypes.c_int)
    return lib


def _action(name: str, errno_ret: int | None, where: str) -> int:
    if name == "SCMP_ACT_ALLOW":
        return _ACT_ALLOW
    if name == "SCMP_ACT_ERRNO":
        return _ACT_ERRNO | ((errno.EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return _ACT_KILL_THREAD
    if name == "SCMP_ACT_KILL_PROCESS":
        return _ACT_KILL_PROCESS
    if name == "SCMP_ACT_TRAP":
        return _ACT_TRAP
    if name == "SCMP_ACT_LOG":
        return _ACT_LOG
    if name == "SCMP_ACT_TRACE":
        return _ACT_TRACE | ((errno_ret or 0) & 0xFFFF)
    raise ConfigError(f"{where}: unknown action {name!r} (SCMP_ACT_NOTIFY is not supported yet)")


def compile_oci(profile: dict[str, Any]) -> bytes:
    """The BPF program of an OCI seccomp profile; errors name the field."""
    where = "linux.seccomp"
    if profile.get("listenerPath") or profile.get("flags"):
        raise ConfigError(f"{where}: listenerPath and flags are not supported yet")
    lib = _library()
    default = _action(str(profile.get("defaultAction", "")), profile.get("defaultErrnoRet"), f"{where}.defaultAction")
    context = lib.seccomp_init(default)
    if not context:
        raise ConfigError(f"{where}: libseccomp could not start a filter")
    try:
        lib.seccomp_attr_set(context, 4, 0)  # SCMP_FLTATR_CTL_NNP off: the init sets no_new_privs itself
        for arch in profile.get("architectures") or ():
            name = _ARCHES.get(arch)
            token = lib.seccomp_arch_resolve_name(name.encode()) if name else 0
            if not token:
                raise ConfigError(f"{where}.architectures: unknown architecture {arch!r}")
            result = lib.seccomp_arch_add(context, token)
            if result not in (0, -errno.EEXIST):
                raise ConfigError(f"{where}.architectures: {arch}: {os.strerror(-result)}")
        for index, rule in enumerate(profile.get("syscalls") or ()):
            _add_rule(lib, context, rule, default, f"{where}.syscalls[{index}]")
        read_end, write_end = os.pipe()
        try:
            if lib.seccomp_export_bpf(context, write_end) != 0:
                raise ConfigError(f"{where}: libseccomp could not export the filter")
            os.close(write_end)
            write_end = -1
            chunks = []
            while chunk := os.read(read_end, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)
    finally:
        lib.seccomp_release(context)


def _add_rule(lib: ctypes.CDLL, context: int, rule: Any, default: int, where: str) -> None:
    if not isinstance(rule, dict) or not isinstance(rule.get("names"), list):
        raise ConfigError(f"{where}: needs names, a list of system calls")
    action = _action(str(rule.get("action", "")), rule.get("errnoRet"), f"{where}.action")
    args = rule.get("args") or []
    comparisons = (_ArgCmp * max(1, len(args)))()
    for position, arg in enumerate(args):
        op = _OPS.get(arg.get("op", "")) if isinstance(arg, dict) else None
        if op is None:
            raise ConfigError(f"{where}.args[{position}]: needs index, value and a SCMP_CMP_* op")
        comparisons[position] = _ArgCmp(int(arg.get("index", 0)), op, int(arg.get("value", 0)),
                                        int(arg.get("valueTwo", 0)))
    if action == default:
        return  # libseccomp refuses a rule that repeats the default; it changes nothing anyway
    indexes = [comparisons[position].arg for position in range(len(args))]
    if len(set(indexes)) < len(indexes):
        # libseccomp takes one comparison per argument in a rule; profiles that list several for
        # the same argument (personality in many defaults) mean "any of these", so as runc does,
        # each comparison becomes a rule of its own.
        groups = [(1, ctypes.pointer(comparisons[position])) for position in range(len(args))]
    else:
        groups = [(len(args), ctypes.pointer(comparisons[0]))]
    for name in rule["names"]:
        number = lib.seccomp_syscall_resolve_name(str(name).encode())
        if number < 0:
            continue  # unknown to this kernel and libseccomp: as runc, nothing to filter
        for count, first in groups:
            result = lib.seccomp_rule_add_array(context, action, number, count, first)
            if result != 0:
                raise ConfigError(f"{where}: {name}: libseccomp refused the rule ({os.strerror(-result)})")


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def load(program: bytes) -> None:
    """Install the BPF ``program`` on this process (seccomp(SECCOMP_SET_MODE_FILTER))."""
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p).value)
    libc = ctypes.CDLL(None, use_errno=True)
    syscall_number = {"x86_64": 317, "aarch64": 277}[os.uname().machine]
    if libc.syscall(syscall_number, 1, 0, ctypes.byref(fprog)) != 0:  # SECCOMP_SET_MODE_FILTER
        code = ctypes.get_errno()
        raise OSError(code, f"seccomp: {os.strerror(code)}")
