"""Two ways to clone a container's init: in this process, or in the fork server.

The clone with namespace flags is a fork, and a fork is only safe where a
single thread runs: the child gets one thread, and whatever lock another
thread held stays locked in it forever. So

* :class:`DirectSpawner` clones from the calling process. The CLI uses it:
  it is single-threaded and saves starting a second interpreter.
* :class:`ForkServerSpawner` asks a fork server (a small single-threaded
  interpreter started once per driver, see forkserver.py) to clone. The
  API uses it, since the caller may run threads; the server's small heap
  also makes the fork cheaper than forking a large program.

Either way the caller gets a :class:`Launch`: the init's pid, and a
descriptor that becomes readable when the init has exited.
"""

from __future__ import annotations

import gc
import os
import sys

from execdriver.errors import ContainerError
from execdriver.linux import signals, syscalls
from execdriver.native.spec import ExecSpec

TYPE_CHECKING = False  # typing, subprocess, threading: not on the CLI's start path
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable
    from typing import Protocol

    from execdriver.linux.fdpass import Socket
    from execdriver.native.protocol import Request
else:
    Protocol = object


class Launch(Protocol):
    pid: int

    def fileno(self) -> int:
        """Readable once the init has exited."""

    def reap(self) -> int:
        """The init's wait status; call once fileno() is readable."""

    def kill(self) -> None:
        """SIGKILL the init, through its pidfd: never another process."""

    def close(self) -> None: ...


def kill_and_reap(launch: Launch) -> None:
    """SIGKILL the init and collect it: one gone already, or lost with the fork server, is no error."""
    launch.kill()
    try:
        launch.reap()
    except (OSError, ContainerError):
        pass


class Spawner(Protocol):
    def spawn(self, request: Request, sync: tuple[int, int], stdio: tuple[int, int, int],
              meanwhile: Callable[[], None] | None = None, ours: tuple[int, ...] = ()) -> Launch:
        """Start the init; ``meanwhile`` runs while the clone is under way; ``ours``: descriptors it must not keep."""


    def close(self) -> None: ...


def born_in(request: Request) -> int:
    """The cgroup v2 directory the request's process is to be cloned into (syscalls.clone), opened; -1: none.

    An init's (spec.Cgroup.into) is made here, before the clone, empty;
    the runtime gives it its limits meanwhile. An exec'd process's is
    taken out of the files it would write itself into, if it exists: if
    not, the process fails there, in runc's words.
    """
    spec = request.spec
    if isinstance(spec, ExecSpec):
        from execdriver.linux import cgroups

        for tasks in spec.cgroup_tasks:
            directory, name = os.path.split(tasks)
            if name == "cgroup.procs" and cgroups.is_v2_directory(directory):
                try:
                    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                except OSError:
                    return -1
                spec.cgroup_tasks = [other for other in spec.cgroup_tasks if other != tasks]
                return fd
        return -1
    if not spec.cgroup.into:
        return -1
    from execdriver.linux.cgroups.base import make_dirs

    try:
        # (make_dirs, not os.makedirs: another container's end may remove an empty parent meanwhile)
        make_dirs(spec.cgroup.into, [])
        return os.open(spec.cgroup.into, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        from execdriver.linux.cgroups import CgroupError

        raise CgroupError(f"cgroup {spec.cgroup.into}: {err.strerror or err}", err.errno or 0) from None


def clone_init(request: Request, sync: tuple[int, int], stdio: tuple[int, int, int],
               close_in_child: tuple[int, ...] = (), cgroup: int = -1) -> tuple[int, int]:
    """Clone the init into new namespaces; returns (pid, pidfd) in the parent.

    ``cgroup``: born_in's descriptor. An exec'd process's request: see
    :func:`clone_exec`.
    """
    spec = request.spec
    if isinstance(spec, ExecSpec):
        return clone_exec(spec, sync[1], stdio, close_in_child, cgroup)
    from execdriver.native import init  # here, not in the child: there an import copies every page it touches

    joined_pid = [path for path, nstype in spec.namespaces.join if nstype == syscalls.CLONE_NEWPID]
    pid_namespace = os.open(joined_pid[0], os.O_RDONLY | os.O_CLOEXEC) if joined_pid else -1
    try:
        pid, pidfd = _clone_in(pid_namespace, spec.namespaces.clone_flags & ~syscalls.CLONE_NEWCGROUP,  # (init.run)
                               cgroup)
    finally:
        if pid_namespace >= 0:
            os.close(pid_namespace)
    if pid == 0:
        _enter_child(close_in_child)
        init.run(spec, request.mode, sync, stdio)
    return pid, pidfd


# The init's namespaces an exec'd process joins: the user one first (the
# others belong to it), the mount one last (it changes the root the others'
# paths would be looked up in). The pid namespace is entered around the
# fork (pid namespaces take children only).
_EXEC_NAMESPACES = (("user", syscalls.CLONE_NEWUSER), ("cgroup", syscalls.CLONE_NEWCGROUP),
                    ("ipc", syscalls.CLONE_NEWIPC), ("uts", syscalls.CLONE_NEWUTS), ("net", syscalls.CLONE_NEWNET),
                    ("mnt", syscalls.CLONE_NEWNS))


def clone_exec(spec: ExecSpec, status: int, stdio: tuple[int, int, int],
               close_in_child: tuple[int, ...] = (), cgroup: int = -1) -> tuple[int, int]:
    """Fork a process into the container of ``spec.init``, the init's (pid, start time).

    The child starts inside the container's pid namespace; it joins the
    rest itself (enter.py). Returns (pid, pidfd) in the parent.
    """
    from execdriver.errors import NotRunningError
    from execdriver.linux import process
    from execdriver.native import enter  # here, not in the child: there an import copies every page it touches

    init_pid, init_start = spec.init
    opened: list[int] = []
    try:
        namespaces = []
        for name, nstype in _EXEC_NAMESPACES:
            path = f"/proc/{init_pid}/ns/{name}"
            if os.readlink(path) != os.readlink(f"/proc/self/ns/{name}"):
                opened.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
                namespaces.append((opened[-1], nstype))
        pid_namespace = -1
        if os.readlink(f"/proc/{init_pid}/ns/pid") != os.readlink("/proc/self/ns/pid"):
            pid_namespace = os.open(f"/proc/{init_pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            opened.append(pid_namespace)
        if process.start_time(init_pid) != init_start:  # the files were the init's, not a reused pid's
            raise NotRunningError(f"Container is not running: {spec.id or init_pid}")
        pid, pidfd = _clone_in(pid_namespace, 0, cgroup)
        if pid == 0:
            _enter_child(close_in_child)
            enter.run(spec, namespaces, status, stdio)
        return pid, pidfd
    finally:
        for fd in opened:
            os.close(fd)


def _clone_in(pid_namespace: int, flags: int, cgroup: int) -> tuple[int, int]:
    """clone, the child in ``pid_namespace`` (a descriptor; -1: ours) if given.

    setns to a pid namespace moves only the children to come (a pod's
    shared one, a container's for exec): clone there, then send this
    process's children home.
    """
    if pid_namespace < 0:
        return syscalls.clone(flags, cgroup)
    home = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.setns(pid_namespace, syscalls.CLONE_NEWPID)
        try:
            pid, pidfd = syscalls.clone(flags, cgroup)
        except BaseException:
            syscalls.setns(home, syscalls.CLONE_NEWPID)
            raise
        if pid != 0:
            syscalls.setns(home, syscalls.CLONE_NEWPID)
        return pid, pidfd
    finally:
        os.close(home)


def _enter_child(close_in_child: tuple[int, ...]) -> None:
    """First steps of a cloned child: no garbage collection, none of the caller's descriptors."""
    # Every page the child writes is copied from the parent; a garbage
    # collection would write to all of them.
    gc.disable()
    for fd in close_in_child:
        try:
            os.close(fd)
        except OSError:
            pass


def profile(request: Request) -> bytes:
    """What an init can do before its spec comes: clone flags and capabilities.

    ``flags:capability mask:last capability``, in decimal; empty for a spec
    that joins a pid namespace or has a user namespace, which no blank init
    staged ahead can serve. Empty for a warm sandbox too: it is made ahead
    itself, and had it taken the blank, the server would make the next
    blank just when a container is likely to take the sandbox.
    """
    spec = request.spec
    if isinstance(spec, ExecSpec) or request.mode.warm or spec.namespaces.joins(syscalls.CLONE_NEWPID):
        return b""
    flags = spec.namespaces.clone_flags
    if flags & syscalls.CLONE_NEWUSER:
        return b""  # its mappings are its own: no blank made ahead could have them
    mask = sum(1 << cap for cap in spec.security.capabilities)
    # No cgroup namespace at the clone: the init makes its own once in its cgroup (init.run).
    return b"%d:%d:%d" % (flags & ~syscalls.CLONE_NEWCGROUP, mask, spec.security.last_cap)


def tree_sources(request: Request) -> list[str] | None:
    """What a blank init needs detached copies of: the rootfs and the bind sources (None: it cannot serve).

    Sent beside the spec, so that the fork server takes the copies without
    decoding the spec, which it passes on (0.1 ms off every start).
    """
    spec = request.spec
    if isinstance(spec, ExecSpec):
        return None
    fs = spec.filesystem
    if fs.root.kind != "dir" or not spec.namespaces.clone_flags & syscalls.CLONE_NEWNS:
        return None
    return [fs.root.path, *fs.bind_sources()]


def _attempt(action: Callable[[], None] | None) -> BaseException | None:
    try:
        if action is not None:
            action()
    except BaseException as err:  # noqa: BLE001 - raised once the init is reaped
        return err
    return None


def _finish(launch: Launch, meanwhile: Callable[[], None] | None,
            failure: BaseException | None = None) -> Launch:
    """Run ``meanwhile``; if it (or an earlier one) failed, the init goes."""
    failure = failure or _attempt(meanwhile)
    if failure is None:
        return launch
    try:
        kill_and_reap(launch)
    finally:
        launch.close()
    raise failure


class _DirectLaunch:
    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self._pidfd = pidfd

    def fileno(self) -> int:
        return self._pidfd

    def reap(self) -> int:
        return os.waitpid(self.pid, 0)[1]

    def kill(self) -> None:
        _kill_pidfd(self._pidfd)

    def close(self) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1


def _kill_pidfd(pidfd: int) -> None:
    try:
        signals.pidfd_send_signal(pidfd, signals.SIGKILL)
    except ProcessLookupError:
        pass


class DirectSpawner:
    """Clone from this process: only for single-threaded callers."""

    def spawn(self, request: Request, sync: tuple[int, int], stdio: tuple[int, int, int],
              meanwhile: Callable[[], None] | None = None, ours: tuple[int, ...] = ()) -> Launch:
        threading = sys.modules.get("threading")  # not imported: surely one thread
        if threading is not None and threading.active_count() > 1:
            raise ContainerError("DirectSpawner needs a single-threaded process; use the fork server")
        cgroup = born_in(request)
        try:
            # The init must not hold the runtime's ends of its sync pipes.
            pid, pidfd = clone_init(request, sync, stdio, ours, cgroup)
        finally:
            if cgroup >= 0:
                os.close(cgroup)
        return _finish(_DirectLaunch(pid, pidfd), meanwhile)

    def close(self) -> None:
        pass


class _ServerLaunch:
    def __init__(self, pid: int, pidfd: int, reply: Socket) -> None:
        self.pid = pid
        self._pidfd = pidfd
        self._reply = reply

    def fileno(self) -> int:
        # The init's own pidfd, not the server's word: readable when the
        # init exits, while the server is woken to reap it (a second
        # wake-up in a row would add its latency).
        return self._pidfd

    def reap(self) -> int:
        message = self._reply.recv(64)  # the server's X, as soon as it has reaped
        from execdriver.native.protocol import EXITED

        if not message.startswith(EXITED):
            raise ContainerError(f"the fork server lost container process {self.pid}")
        return int(message[1:])

    def kill(self) -> None:
        _kill_pidfd(self._pidfd)

    def close(self) -> None:
        self._reply.close()
        os.close(self._pidfd)


class ForkServerSpawner:
    """Clone in a fork server, started on first use and stopped by close()."""

    def __init__(self, staging: str) -> None:
        """``staging``: an empty directory of ours where the server's blank inits stage."""
        import threading

        self.staging = staging
        self._lock = threading.Lock()
        self._control: Socket | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def _start(self) -> Socket:
        with self._lock:
            if self._control is None or (self._process is not None and self._process.poll() is not None):
                import subprocess

                from execdriver.linux import fdpass

                if self._control is not None:  # the server died: start another
                    self._control.close()

                ours, theirs = fdpass.pair()
                package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
                # Our modules from the frozen file, as the CLI imports them (freeze.py).
                bootstrap = (
                    f"import sys; sys.path.insert(0, {package_parent!r}); from execdriver import freeze; "
                    f"freeze.use(); "
                    f"from execdriver.native.forkserver import main; main({theirs.fileno()}, {self.staging!r})"
                )
                self._process = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", bootstrap],
                    pass_fds=(theirs.fileno(),),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    start_new_session=True,
                )
                theirs.close()
                self._control = ours
            return self._control

    def spawn(self, request: Request, sync: tuple[int, int], stdio: tuple[int, int, int],
              meanwhile: Callable[[], None] | None = None, ours: tuple[int, ...] = ()) -> Launch:
        from execdriver.linux import fdpass
        from execdriver.native import protocol

        control = self._start()
        cgroup = born_in(request)
        reply, server_end = fdpass.pair()
        try:
            # The profile leads, so that the server can hand a blank init
            # the request without decoding it.
            shape = profile(request)
            payload = protocol.frame(shape, tree_sources(request) if shape else None, request.kept(),
                                     request.encode())
            try:
                born = [cgroup] if cgroup >= 0 else []
                fdpass.send_fds(control, payload, [server_end.fileno(), *sync, *stdio, *born])
            finally:
                server_end.close()
                if cgroup >= 0:
                    os.close(cgroup)
        except OSError as err:
            reply.close()
            raise ContainerError(f"the fork server is gone: {err}") from None
        failure = _attempt(meanwhile)  # while the server clones
        try:
            message, fds = fdpass.recv_fds(reply, 65536, 1)
        except OSError as err:
            reply.close()
            raise ContainerError(f"the fork server is gone: {err}") from None
        if message.startswith(protocol.PID) and len(fds) == 1:
            return _finish(_ServerLaunch(int(message[1:]), fds[0], reply), None, failure)
        for fd in fds:
            os.close(fd)
        reply.close()
        if failure is not None:  # what made the clone fail, most likely (a cgroup removed under it)
            raise failure
        text = message[1:].decode(errors="replace") if message else "no answer"
        raise ContainerError(f"the fork server could not clone the container: {text}")

    def close(self) -> None:
        with self._lock:
            if self._control is not None:
                self._control.close()
                self._control = None
            if self._process is not None:
                self._process.wait()
                self._process = None
