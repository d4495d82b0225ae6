"""A container process's last steps, then exec: what the init and an exec'd process share.

The program and the user looked up in the container's root, the process's
limits, credentials, capabilities and seccomp filter set, the working
directory entered (never one outside the root: CVE-2024-21626), and the
exec; or its failure, reported to the runtime. init.py runs these after
building the container, enter.py in a running one; only the first needs
the rootfs code, which an exec so never loads.
"""

from __future__ import annotations

import fcntl
import os

from execdriver.linux import capabilities, read_file, signals, syscalls, users
from execdriver.native.protocol import ERROR, GO, SECCOMP
from execdriver.native.spec import DEFAULT_PATH

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

    from execdriver.native.spec import Process, Security


class InitError(Exception):
    pass


def find_executable(name: str, env: list[str]) -> str:
    if "/" in name:
        candidates = [name]
    else:
        path = next((e[5:] for e in env if e.startswith("PATH=")), DEFAULT_PATH)
        candidates = [os.path.join(d or ".", name) for d in path.split(":")]
    for candidate in candidates:
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            if "/" in name:
                raise InitError(f'exec: "{name}": permission denied')
    if "/" in name:
        raise InitError(f'exec: "{name}": no such file or directory')
    raise InitError(f'exec: "{name}": executable file not found in $PATH')


def resolve(process: Process, known: tuple[str, users.User] | None = None,
            program: tuple[list[str], str] | None = None) -> tuple[str, users.User, dict[str, str]]:
    """The program, user and environment, looked up in the container's root.

    ``known``: a user name already resolved (a warm sandbox's), and what it
    is; ``program``: argv[0] and the environment it was looked up with, and
    the executable found.
    """
    try:
        user = known[1] if known is not None and known[0] == process.user else users.resolve(process.user)
    except users.UserError as err:
        raise InitError(str(err)) from None
    for gid in process.additional_gids:
        if gid not in user.groups:
            user.groups.append(gid)
    env = process.env
    if not any(e.startswith("HOME=") for e in env):
        env = [*env, f"HOME={user.home}"]
    cwd = process.cwd
    if not os.path.isdir(cwd):
        try:
            os.makedirs(cwd, 0o755)
        except OSError as err:
            raise InitError(f"working directory {cwd}: {err.strerror}") from None
    environ = dict(entry.split("=", 1) for entry in env)
    if program is not None and program[0] == process.argv[:1] + process.env:
        return program[1], user, environ  # (gone since? execve says so)
    return find_executable(process.argv[0], env), user, environ


def _enter_directory(cwd: str) -> bool:
    """Into the working directory while we may still search any directory, and before a seccomp
    filter may refuse getcwd: False if refused (the user may get in: _enter_user tries again).

    The user may not search it (runc's order, its issue 2086); the
    runtime's root may not search what is the user's own in a user
    namespace.
    """
    try:
        os.chdir(cwd)
    except PermissionError:
        return False
    except OSError as err:
        raise InitError(f"working directory {cwd}: {err.strerror}") from None
    _check_directory(cwd)
    return True


def _check_directory(cwd: str) -> None:
    try:
        os.getcwd()
    except OSError:
        # A directory outside the pivoted root (a leaked host descriptor's
        # /proc/self/fd/N) has no path from /: refuse it (CVE-2024-21626).
        raise InitError(f"working directory {cwd}: resolves outside the container's rootfs") from None


def _enter_user(user: users.User, cwd: str, security: Security) -> None:
    """The user's ids, groups and capabilities; then ``cwd``, if _enter_directory could not."""
    sets = security.capability_sets
    if user.uid != 0:
        _give_stdio(user.uid)
    if sets is not None:  # an OCI config names every set: keep them across setuid
        syscalls.set_keepcaps(True)
    try:
        os.setgroups(user.groups)
    except PermissionError:
        if users.setgroups_allowed():
            raise  # (asked first, the file cost every start a read)
    os.setgid(user.gid)
    os.setuid(user.uid)
    try:
        if sets is not None:
            syscalls.set_keepcaps(False)
            capabilities.set_process(sets.permitted, sets.effective, sets.inheritable)
            # The kernel admits an ambient capability only if it is permitted and
            # inheritable (capabilities(7)); runc's default config lists ambient
            # ones without inheritable, which runtimes leave out, as we do.
            for cap in sets.ambient:
                if cap in sets.permitted and cap in sets.inheritable:
                    capabilities.raise_ambient(cap)
        else:
            # A non-root user lost its capabilities with setuid; root keeps the set.
            capabilities.set_process(security.capabilities if user.uid == 0 else [])
    except OSError as err:  # one the runtime itself lacks, most likely
        raise InitError(f"unable to apply capabilities: {err.strerror or err}") from None
    if cwd:
        try:
            os.chdir(cwd)
        except OSError as err:
            raise InitError(f"working directory {cwd}: {err.strerror}") from None
        _check_directory(cwd)


def _give_stdio(uid: int) -> None:
    """Our stdio becomes the user's (its terminal above all, as runc's fixStdioPermissions does):
    it was made by root, and a user who cannot reopen /dev/pts/0 or /proc/self/fd/1 has no console.

    Not /dev/null; the group stays (devpts gives its tty group). What may
    not be changed (an id the user namespace does not map, a read-only
    /dev) is left as it is.
    """
    try:
        null = os.stat("/dev/null").st_rdev
    except OSError:
        null = -1
    for fd in (0, 1, 2):
        try:
            info = os.fstat(fd)
            if info.st_uid != uid and not (info.st_rdev and info.st_rdev == null):
                os.fchown(fd, uid, -1)
        except OSError:
            continue


def _report(status: int, message: str) -> None:
    """To the driver; if it is gone (an OCI container after create), to stderr."""
    encoded = message.encode("utf-8", "replace")[:4000]
    try:
        os.write(status, ERROR + encoded)
    except OSError:
        try:
            os.write(2, b"execdriver: container init: " + encoded + b"\n")
        except OSError:
            pass


def take_stdio(stdio: tuple[int, int, int], preserved: int) -> None:
    """``stdio`` onto 0-2; every other descriptor closes on exec but 3 to 3+``preserved``-1.

    No host descriptor inherited from our parent reaches the container
    (CVE-2024-21626); --preserve-fds hands the first N on as they are.
    """
    # Out of 0-2 first, so that (stdout, stderr) = (2, 1) does not clobber.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in stdio]
    for target, fd in enumerate(high):
        os.dup2(fd, target)
        os.close(fd)  # a created init waits long: an engine waits for EOF on what it gave us
    syscalls.close_range_cloexec(3 + preserved)
    for fd in range(3, 3 + preserved):
        os.set_inheritable(fd, True)


def default_signals() -> None:
    """Every disposition and the mask as a fresh program expects them.

    execve resets handled signals but keeps ignored ones: Python ignores
    SIGPIPE and SIGXFSZ, the fork server SIGINT; the CLI forwards others.
    """
    for signum in (signals.SIGPIPE, signals.SIGXFSZ, signals.SIGINT, signals.SIGTERM):
        signals.signal_default(signum)
    signals.unblock_all_signals()


def set_oom_score_adj(wanted: int | None) -> None:
    if wanted is not None:
        current = int(read_file("/proc/self/oom_score_adj"))
        if current != wanted:  # (in a user namespace the runtime wrote the init's: _map_users)
            try:
                syscalls.proc_write("/proc/self/oom_score_adj", str(wanted))
            except OSError as err:  # below the runtime's own needs CAP_SYS_RESOURCE
                raise InitError(f"failed to update /proc/self/oom_score_adj to {wanted}: {err.strerror}") from None


def _finish_process(security: Security) -> None:
    """The process attributes an OCI config may set, just before exec."""
    for resource, soft, hard in security.rlimits:
        syscalls.setrlimit(resource, soft, hard)
    set_oom_score_adj(security.oom_score_adj)
    if security.io_priority is not None:
        syscalls.ioprio_set(*security.io_priority)
    if security.apparmor_profile:
        # Takes effect at exec (the kernel's AppArmor interface, as runc writes it).
        attr = "/proc/self/attr/apparmor/exec"
        syscalls.proc_write(attr if os.path.exists(attr) else "/proc/self/attr/exec",
                          f"exec {security.apparmor_profile}")
    if security.no_new_privileges:
        syscalls.set_no_new_privs()


# Set in a warm sandbox that reports which pages its last steps wrote
# (linux/memory.py, pool.py): called right before exec.
report_pages: Callable[[], None] | None = None


def become(process: Process, security: Security, executable: str, user: users.User,
           env: dict[str, str]) -> NoReturn:
    """The process's own settings, then exec: shared by the init and exec'd processes."""
    settle(process, security, user)
    if report_pages is not None:
        try:
            report_pages()
        except OSError:
            pass  # the pool learns from another sandbox
    os.execve(executable, process.argv, env)


def settle(process: Process, security: Security, user: users.User) -> None:
    """Every setting of the process but the exec: limits, user, capabilities, the seccomp filter last."""
    _finish_process(security)
    os.umask(security.umask)
    entered = _enter_directory(process.cwd)
    program = security.seccomp_bpf
    if program and not security.no_new_privileges:
        _load_filter(program, security.seccomp_notify)  # now, while CAP_SYS_ADMIN lets us (no no_new_privs)
    _enter_user(user, "" if entered else process.cwd, security)
    if program and security.no_new_privileges:
        _load_filter(program, security.seccomp_notify)  # as late as can be: the filter binds exec too


# Where a notifying filter's listener is reported, and the runtime's answer
# read: (status, go) of an OCI init, (status, status) of an exec'd process.
listener_channel = (-1, -1)


def _load_filter(program: bytes, notifies: bool) -> None:
    listener = syscalls.seccomp_set_filter(program, listener=notifies)
    if listener < 0:
        return
    # Until the agent has the listener, a call the filter notifies would wait on no one:
    # the runtime copies it from us (pidfd_getfd) and gives it to the agent, then answers.
    status, answer = listener_channel
    os.write(status, SECCOMP + b"%d" % listener)
    if os.read(answer, 1) != GO:
        os._exit(1)
    os.close(listener)  # (the agent's copy is the one: with it gone, notified calls get ENOSYS)


def fail(status: int, err: BaseException, who: str) -> NoReturn:
    """Report why the child could not exec, and end it without unwinding."""
    try:
        if isinstance(err, InitError):
            _report(status, str(err))
        elif isinstance(err, OSError):
            _report(status, f"{err.strerror or err}" + (f": {err.filename}" if err.filename else ""))
        else:
            _report(status, f"{who}: {type(err).__name__}: {err}")
    finally:
        os._exit(1)
