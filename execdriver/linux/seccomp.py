"""seccomp filters: OCI ``linux.seccomp`` and Docker profiles compiled with libseccomp, loaded by the init.

The profile is compiled in the runtime's process into the classic BPF
program that libseccomp exports; the init only loads those bytes with
seccomp(2), as late as it can: right before exec when no_new_privileges is
set, otherwise before it gives up CAP_SYS_ADMIN (which loading needs).

Docker's JSON format (``archMap``, rules that ``includes``/``excludes``
capabilities, architectures or kernels) is resolved against the
container's capabilities and this machine into the OCI form first. The
default profile of the API and ``execdriver sandbox`` is Docker's. Debian
ships its derivative that Podman uses (/usr/share/containers/seccomp.json,
package golang-github-containers-common), which allows more than Docker's
without any capability: mount, unshare, setns, keyctl, pivot_root, clone
with namespace flags and more. ``docker_default`` puts Docker's rules back
(_DOCKER_GATED below): those need the capability Docker asks for, and the
default errno is Docker's EPERM. Compiling takes ~13 ms, so programs are
kept: in memory, and on disk under the runtime's state directory (root's
alone), keyed by the profile file's identity and the capabilities.
"""

from __future__ import annotations

import errno
import os

from execdriver.errors import ConfigError
from execdriver.linux import ffi

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_ACT_KILL_PROCESS = 0x80000000
_ACT_KILL_THREAD = 0x00000000
_ACT_TRAP = 0x00030000
_ACT_ERRNO = 0x00050000
_ACT_TRACE = 0x7FF00000
_ACT_LOG = 0x7FFC0000
_ACT_NOTIFY = 0x7FC00000
_ACT_ALLOW = 0x7FFF0000
OPERATORS = _OPS = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
ARCHES = _ARCHES = {
    "SCMP_ARCH_X86": "x86", "SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_X32": "x32", "SCMP_ARCH_ARM": "arm",
    "SCMP_ARCH_AARCH64": "aarch64", "SCMP_ARCH_MIPS": "mips", "SCMP_ARCH_MIPS64": "mips64",
    "SCMP_ARCH_MIPS64N32": "mips64n32", "SCMP_ARCH_MIPSEL": "mipsel", "SCMP_ARCH_MIPSEL64": "mipsel64",
    "SCMP_ARCH_MIPSEL64N32": "mipsel64n32", "SCMP_ARCH_PPC": "ppc", "SCMP_ARCH_PPC64": "ppc64",
    "SCMP_ARCH_PPC64LE": "ppc64le", "SCMP_ARCH_S390": "s390", "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_RISCV64": "riscv64",
}


DEFAULT_PROFILE = "/usr/share/containers/seccomp.json"
UNCONFINED = "unconfined"
# This machine in Docker's terms: (Go's GOARCH, libseccomp's native architecture).
_NATIVE = {"x86_64": ("amd64", "SCMP_ARCH_X86_64"), "aarch64": ("arm64", "SCMP_ARCH_AARCH64")}


class _ArgCmp(ffi.Structure):
    _fields_ = (("arg", ffi.c_uint), ("op", ffi.c_int), ("datum_a", ffi.c_uint64),
                ("datum_b", ffi.c_uint64))


def _library() -> ffi.Library:
    try:
        lib = ffi.Library("libseccomp.so.2")
    except OSError:
        raise ConfigError("linux.seccomp: libseccomp (libseccomp2) is not installed") from None
    lib.seccomp_init.restype = ffi.c_void_p
    lib.seccomp_init.argtypes = (ffi.c_uint32,)
    lib.seccomp_release.argtypes = (ffi.c_void_p,)
    lib.seccomp_arch_add.argtypes = (ffi.c_void_p, ffi.c_uint32)
    lib.seccomp_arch_resolve_name.restype = ffi.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = (ffi.c_char_p,)
    lib.seccomp_syscall_resolve_name.argtypes = (ffi.c_char_p,)
    lib.seccomp_rule_add_array.argtypes = (ffi.c_void_p, ffi.c_uint32, ffi.c_int, ffi.c_uint,
                                           ffi.POINTER(_ArgCmp))
    lib.seccomp_attr_set.argtypes = (ffi.c_void_p, ffi.c_int, ffi.c_uint32)
    lib.seccomp_export_bpf.argtypes = (ffi.c_void_p, ffi.c_int)
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
    if name == "SCMP_ACT_NOTIFY":
        return _ACT_NOTIFY
    raise ConfigError(f"{where}: unknown action {name!r}")


def _malformed(where: str, err: Exception) -> ConfigError:
    """A field of the wrong type deep in a profile ("value": "x", an includes that is a list)."""
    return ConfigError(f"{where}: malformed profile: {err}")


def compile_oci(profile: dict[str, Any], where: str = "linux.seccomp", cache_dir: str = "") -> bytes:
    """The BPF program of an OCI seccomp profile; errors name the field.

    ``cache_dir``: where the programs compiled before are kept, named by
    the profile and the libseccomp that compiled it (_cache_name). The
    engines give every container the same profile, and compiling Docker's
    cost each ``create`` 21 ms here (39.6 ms against 60.5 with it), most of
    it libseccomp building its tree through a C call per rule.
    """
    try:
        if not cache_dir:
            return _compile(profile, where)
        path = os.path.join(cache_dir, _cache_name(profile))
        try:
            with open(path, "rb") as handle:
                cached = handle.read()
            if cached and len(cached) % 8 == 0:  # whole BPF instructions
                return cached
        except OSError:
            pass
        compiled = _compile(profile, where)
        _keep(cache_dir, path, compiled)
        return compiled
    except ConfigError:
        raise
    except (TypeError, ValueError, AttributeError) as err:
        raise _malformed(where, err) from None


# Changed whenever _compile would make another program of the same profile with the same libseccomp.
_COMPILER = b"execdriver seccomp 1"
_CACHE_SIZE = 64  # programs kept: an engine's few profiles, with room


def _cache_name(profile: dict[str, Any]) -> str:
    """The profile (marshal keeps a JSON document's order: the same config, the same bytes), the
    interpreter that marshalled it, and the libseccomp file that compiles it, hashed: a library
    upgraded in place knows other system calls, and makes another program."""
    import marshal
    import sys
    from _sha256 import sha256  # type: ignore[import-not-found]  # (hashlib loads OpenSSL: 10 ms)

    _library()  # (mapped now, if it was not)
    library = b""
    with open("/proc/self/maps", "rb") as handle:
        for line in handle:
            if b"/libseccomp.so" in line:
                info = os.stat(line.split(maxsplit=5)[5].strip())
                library = b"%d:%d:%d:%d" % (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
                break
    digest = sha256(_COMPILER + b"\0" + sys.implementation.cache_tag.encode() + b"\0" + library + b"\0")
    digest.update(marshal.dumps(profile))
    return f"oci-{digest.hexdigest()}.bpf"


def _keep(cache_dir: str, path: str, compiled: bytes) -> None:
    """Write ``compiled`` at ``path`` whole or not at all (threads and processes may fill it at once);
    keep the newest _CACHE_SIZE programs of OCI configs. A cache that cannot be written is only slower."""
    temporary = f"{path}.{os.getpid()}.{os.urandom(4).hex()}"
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, compiled)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        kept = [entry for entry in os.scandir(cache_dir) if entry.name.startswith("oci-")]
        if len(kept) > _CACHE_SIZE:
            kept.sort(key=lambda entry: entry.stat().st_mtime_ns)
            for entry in kept[: len(kept) - _CACHE_SIZE]:
                os.unlink(entry.path)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass


def notifies(profile: dict[str, Any]) -> bool:
    """Whether a rule of the profile says SCMP_ACT_NOTIFY: its listener goes to the agent at listenerPath."""
    return any(isinstance(rule, dict) and rule.get("action") == "SCMP_ACT_NOTIFY"
               for rule in profile.get("syscalls") or ())


def _compile(profile: dict[str, Any], where: str) -> bytes:
    if profile.get("flags"):
        raise ConfigError(f"{where}.flags: not supported yet")
    lib = _library()
    default = _action(str(profile.get("defaultAction", "")), profile.get("defaultErrnoRet"), f"{where}.defaultAction")
    if default == _ACT_NOTIFY:
        raise ConfigError(f"{where}.defaultAction: SCMP_ACT_NOTIFY cannot be used as default action")
    if notifies(profile) and not profile.get("listenerPath"):
        raise ConfigError(f"{where}.listenerPath: SCMP_ACT_NOTIFY needs the agent's socket")
    context = lib.seccomp_init(default)
    if not context:
        raise ConfigError(f"{where}: libseccomp could not start a filter")
    try:
        lib.seccomp_attr_set(context, 3, 0)  # SCMP_FLTATR_CTL_NNP off: the init sets no_new_privs itself
        # SCMP_FLTATR_CTL_OPTIMIZE 2: a binary tree of the system calls, not a list. The kernel
        # runs the filter for every call number when it loads it (to cache constant verdicts):
        # Docker's profile then loads in 1.1 ms instead of 1.8, and every call is judged sooner.
        lib.seccomp_attr_set(context, 8, 2)
        for arch in profile.get("architectures") or ():
            name = _ARCHES.get(arch)
            token = lib.seccomp_arch_resolve_name(name.encode()) if name else 0
            if not token:
                raise ConfigError(f"{where}.architectures: unknown architecture {arch!r}")
            result = lib.seccomp_arch_add(context, token)
            if result not in (0, -errno.EEXIST):
                raise ConfigError(f"{where}.architectures: {arch}: {os.strerror(-result)}")
        last = -1
        for index, rule in enumerate(profile.get("syscalls") or ()):
            last = max(last, _add_rule(lib, context, rule, default, f"{where}.syscalls[{index}]"))
        read_end, write_end = os.pipe()
        try:
            if lib.seccomp_export_bpf(context, write_end) != 0:
                raise ConfigError(f"{where}: libseccomp could not export the filter")
            os.close(write_end)
            write_end = -1
            chunks = []
            while chunk := os.read(read_end, 65536):
                chunks.append(chunk)
            permissive = default in (_ACT_ALLOW, _ACT_LOG) or default == _ACT_ERRNO | errno.ENOSYS
            return (b"" if permissive or last < 0 else _enosys_stub(last)) + b"".join(chunks)
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)
    finally:
        lib.seccomp_release(context)


_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000


def _enosys_stub(last: int) -> bytes:
    """BPF run before libseccomp's: a native system call newer than any the profile names gets ENOSYS.

    As runc's patchbpf: a profile whose default refuses (EPERM) would
    refuse calls newer than it knows, and programs then take EPERM for a
    verdict; with ENOSYS, libc falls back to an older call, as on an older
    kernel. (x86_64's own calls; x32's and i386's keep libseccomp's default.)
    """
    import struct

    ld_abs, jeq, jge, jgt, ret = 0x20, 0x15, 0x35, 0x25, 0x06
    program = (
        (ld_abs, 0, 0, 4),  # the architecture
        (jeq, 0, 4, _AUDIT_ARCH_X86_64),  # not x86_64: on to the filter
        (ld_abs, 0, 0, 0),  # the call's number
        (jge, 2, 0, _X32_BIT),  # an x32 call: on to the filter
        (jgt, 0, 1, last),
        (ret, 0, 0, _ACT_ERRNO | errno.ENOSYS),
    )
    return b"".join(struct.pack("<HBBI", *instruction) for instruction in program)


def _add_rule(lib: ffi.Library, context: int, rule: Any, default: int, where: str) -> int:
    """Add ``rule`` to the filter: the highest native call number it names (-1: none known)."""
    if not isinstance(rule, dict) or not isinstance(rule.get("names"), list):
        raise ConfigError(f"{where}: needs names, a list of system calls")
    action = _action(str(rule.get("action", "")), rule.get("errnoRet"), f"{where}.action")
    if action == _ACT_NOTIFY and "write" in rule["names"]:
        # The init reports the listener with a write: it would wait on an agent it has not reached yet.
        raise ConfigError(f"{where}: SCMP_ACT_NOTIFY cannot be used for the write syscall")
    args = rule.get("args") or []
    comparisons = (_ArgCmp * max(1, len(args)))()
    for position, arg in enumerate(args):
        op = _OPS.get(arg.get("op", "")) if isinstance(arg, dict) else None
        if op is None:
            raise ConfigError(f"{where}.args[{position}]: needs index, value and a SCMP_CMP_* op")
        comparisons[position] = _ArgCmp(int(arg.get("index", 0)), op, int(arg.get("value", 0)),
                                        int(arg.get("valueTwo", 0)))
    numbers = [lib.seccomp_syscall_resolve_name(str(name).encode()) for name in rule["names"]]
    last = max(numbers, default=-1)
    if action == default:
        return last  # libseccomp refuses a rule that repeats the default; it changes nothing anyway
    indexes = [comparisons[position].arg for position in range(len(args))]
    if len(set(indexes)) < len(indexes):
        # libseccomp takes one comparison per argument in a rule; profiles that list several for
        # the same argument (personality in many defaults) mean "any of these", so as runc does,
        # each comparison becomes a rule of its own.
        groups = [(1, ffi.pointer(comparisons[position])) for position in range(len(args))]
    else:
        groups = [(len(args), ffi.pointer(comparisons[0]))]
    for name, number in zip(rule["names"], numbers, strict=True):
        if number < 0:
            continue  # unknown to this kernel and libseccomp: as runc, nothing to filter
        for count, first in groups:
            result = lib.seccomp_rule_add_array(context, action, number, count, first)
            if result not in (0, -errno.EEXIST):  # EEXIST: the same rule twice (Podman's default has some)
                raise ConfigError(f"{where}: {name}: libseccomp refused the rule ({os.strerror(-result)})")
    return last


# Where Docker's default profile is stricter than Podman's: the capability a
# system call needs (None: never allowed).
_DOCKER_GATED: dict[str | None, tuple[str, ...]] = {
    "CAP_SYS_ADMIN": ("clone", "clone3", "fsconfig", "fsmount", "fsopen", "fspick", "mount", "mount_setattr",
                      "move_mount", "open_tree", "setns", "syslog", "umount", "umount2", "unshare"),
    "CAP_SYSLOG": ("syslog",),
    "CAP_SYS_PTRACE": ("pidfd_getfd",),
    "CAP_SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy"),
    "CAP_SYS_BOOT": ("reboot",),
    None: ("keyctl", "add_key", "request_key", "pivot_root"),
}
_NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET


def docker_default(profile: dict[str, Any]) -> dict[str, Any]:
    """Docker's default profile from Podman's (see the module's docstring)."""
    gated = {name for names in _DOCKER_GATED.values() for name in names}
    rules: list[dict[str, Any]] = []
    for rule in profile.get("syscalls") or ():
        if rule.get("action") == "SCMP_ACT_ALLOW" and not (rule.get("includes") or {}).get("caps"):
            rules.append({**rule, "names": [name for name in rule.get("names") or () if name not in gated]})
        else:
            rules.append(rule)
    for cap, names in _DOCKER_GATED.items():
        if cap is not None:
            rules.append({"names": list(names), "action": "SCMP_ACT_ALLOW", "includes": {"caps": [cap]}})
    # Without CAP_SYS_ADMIN: clone without namespace flags, and clone3 says ENOSYS (its
    # flags are in memory, out of seccomp's sight), so that libc falls back to clone.
    rules.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                  "args": [{"index": 0, "value": _NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
                  "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}})
    rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS,
                  "excludes": {"caps": ["CAP_SYS_ADMIN"]}})
    return {**profile, "defaultErrnoRet": errno.EPERM, "syscalls": rules}


def _kernel() -> tuple[int, ...]:
    release = os.uname().release.split("-")[0]
    return tuple(int(part) for part in release.split(".")[:2] if part.isdigit())


def docker_to_oci(profile: dict[str, Any], capabilities: set[str], where: str = "seccomp_profile") -> dict[str, Any]:
    """A profile in Docker's format, for a container with ``capabilities`` (CAP_* names), on this machine."""
    try:
        return _from_docker(profile, capabilities, where)
    except ConfigError:
        raise
    except (TypeError, ValueError, AttributeError) as err:
        raise _malformed(where, err) from None


def _from_docker(profile: dict[str, Any], capabilities: set[str], where: str) -> dict[str, Any]:
    goarch, native = _NATIVE.get(os.uname().machine, ("", ""))
    architectures = list(profile.get("architectures") or ())
    for entry in profile.get("archMap") or ():
        if entry.get("architecture") == native:
            architectures = [native, *(entry.get("subArchitectures") or ())]
    kernel = _kernel()
    rules = []
    for index, rule in enumerate(profile.get("syscalls") or ()):
        if not isinstance(rule, dict):
            raise ConfigError(f"{where}.syscalls[{index}]: expected an object")
        includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
        if includes.get("arches") and goarch not in includes["arches"]:
            continue
        if excludes.get("arches") and goarch in excludes["arches"]:
            continue
        if includes.get("caps") and not set(includes["caps"]) <= capabilities:
            continue
        if excludes.get("caps") and set(excludes["caps"]) & capabilities:
            continue
        minimum = includes.get("minKernel")
        if minimum and kernel < tuple(int(part) for part in str(minimum).split(".")[:2]):
            continue
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        rules.append({"names": names, "action": rule.get("action"), "args": rule.get("args") or [],
                      **({"errnoRet": rule["errnoRet"]} if rule.get("errnoRet") is not None else {})})
    return {"defaultAction": profile.get("defaultAction"), "defaultErrnoRet": profile.get("defaultErrnoRet"),
            "architectures": architectures, "syscalls": rules}


_programs: dict[tuple[str, tuple[int, ...]], bytes] = {}


def program(profile: str, capabilities: list[int], cache_dir: str = "") -> bytes | None:
    """The BPF program of ``profile`` for a container with ``capabilities`` (numbers); None if unconfined.

    ``profile``: "" for the default profile, "unconfined", or a profile in
    Docker's JSON format. ``cache_dir``: where compiled programs of the
    default profile are kept between processes.
    """
    from execdriver.linux.capabilities import NAMES

    if profile == UNCONFINED:
        return None
    caps = tuple(sorted(capabilities))
    key = (profile, caps)
    cached = _programs.get(key)
    if cached is not None:
        return cached
    path = ""
    if not profile:
        try:
            info = os.stat(DEFAULT_PROFILE)
        except FileNotFoundError:
            raise ConfigError(
                f"seccomp_profile: the default profile {DEFAULT_PROFILE} is missing (Debian's "
                "golang-github-containers-common installs it); install it, or ask for 'unconfined'") from None
        mask = sum(1 << cap for cap in caps)
        name = f"tree-{info.st_ino:x}-{info.st_mtime_ns:x}-{info.st_size:x}-{mask:x}.bpf"
        path = os.path.join(cache_dir, name) if cache_dir else ""
        if path:
            try:
                with open(path, "rb") as handle:
                    _programs[key] = handle.read()
                    return _programs[key]
            except FileNotFoundError:
                pass
    import json

    try:
        text = profile
        if not profile:
            with open(DEFAULT_PROFILE, encoding="utf-8") as handle:
                text = handle.read()
        parsed = json.loads(text)
    except ValueError as err:
        raise ConfigError(f"seccomp_profile: not a JSON profile ({err})") from None
    if not isinstance(parsed, dict):
        raise ConfigError("seccomp_profile: not a JSON profile (expected an object)")
    names = {NAMES[cap] for cap in caps if cap < len(NAMES)}
    if not profile:
        parsed = docker_default(parsed)
    compiled = compile_oci(docker_to_oci(parsed, names), where="seccomp_profile")
    _programs[key] = compiled
    if path:
        _keep(cache_dir, path, compiled)
    return compiled
