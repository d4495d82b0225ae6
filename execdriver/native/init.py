"""The container's init: what runs in the cloned child until it execs.

It runs in a copy of a single-threaded process (the fork server, or the
CLI), already inside the new namespaces, and talks to the runtime over two
descriptors, ``sync = (go, status)``, in the messages of protocol.py. Two
steps: :func:`prepare` takes it to ready (namespaces joined, rootfs built
and pivoted into, cgroup joined, program found), :func:`wait` holds it
there as its launcher's Mode says (a go, an OCI start, a warm sandbox's
process), then execute.become execs (what an exec'd process shares).

Everything the runtime could decide before the clone (paths, argv, env)
arrives ready-made in the spec, so the child only makes system calls.
"""

from __future__ import annotations

import os

from execdriver.linux import capabilities, rootfs, signals, syscalls, users
from execdriver.native import execute
from execdriver.native.execute import (
    InitError,
    become,
    default_signals,
    fail,
    find_executable,
    resolve,
    set_oom_score_adj,
    settle,
    take_stdio,
)
from execdriver.native.protocol import CGROUP, GO, READY, USERS, Handover

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from execdriver.linux.fdpass import Socket
    from execdriver.linux.filesystem import Filesystem
    from execdriver.native.protocol import Mode
    from execdriver.native.spec import LaunchSpec, Process

    Resolved = tuple[str, users.User, dict[str, str]]  # the executable, the user, the environment


def _join_cgroup(hierarchies: list[int], join: list[tuple[str, str]]) -> None:
    """Move this (single-threaded) process into its v1 cgroups by itself.

    Writing "0" to a ``tasks`` file moves the writer alone, which the kernel
    does without the global threadgroup lock that a write of a pid to
    cgroup.procs takes: that lock waits for an RCU grace period, often
    10-30 ms, on every start.
    """
    for directory, (_, tasks) in zip(hierarchies, join, strict=True):
        fd = os.open(tasks, os.O_WRONLY | os.O_CLOEXEC, dir_fd=directory)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
        os.close(directory)


def detach(clone_flags: int, pdeathsig: bool = True) -> None:
    """What the init does whatever its container: a blank init does it ahead.

    Dies with its parent; leaves the caller's session; default signal
    dispositions; in a new network namespace, ``lo`` is up. (The mount
    namespace is the spec's business: a blank must see the host's mounts
    as they are when its container comes, not when it was cloned.)
    """
    # Until it execs, the init is the host's interpreter inside the
    # container: non-dumpable, nothing there may open its /proc/1/exe, memory
    # or descriptors (CVE-2019-5736), say a process exec'd while it waits
    # for start. execve makes the user's program dumpable again.
    syscalls.set_dumpable(False)
    if pdeathsig:
        syscalls.set_pdeathsig(signals.SIGKILL)
    os.setsid()
    default_signals()
    os.umask(0)
    if clone_flags & syscalls.CLONE_NEWNET:
        syscalls.loopback_up()


def _wait_for_start(fifo: int) -> None:
    """OCI create: block until ``start`` opens the exec FIFO and reads it.

    ``fifo`` is an O_PATH descriptor taken before the pivot hid the state
    directory; opening it through /proc/self/fd waits for the reader. We
    are the container's user by now: the FIFO is writable by all (0622, as
    runc makes it), and only this process holds a path to it.
    """
    fd = os.open(f"/proc/self/fd/{fifo}", os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)
        os.close(fifo)


def _start_container_hooks(mode: Mode) -> None:
    """The startContainer hooks, as runc's init runs them: after start, in the container, as its
    process (user, capabilities, seccomp filter), with the state on stdin; one that fails ends us."""
    import select

    head, tail = mode.start_state
    state = b"%s%d%s" % (head, os.getpid(), tail)
    for index, (path, args, env, timeout) in enumerate(mode.start_hooks):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.dup2(read_end, 0)
                os.execve(path, args or [path], dict(entry.split("=", 1) for entry in env if "=" in entry))
            finally:
                os._exit(127)
        os.close(read_end)
        try:
            os.write(write_end, state)  # (a pipe buffers it; a hook need not read it)
        except OSError:
            pass
        os.close(write_end)
        exited = os.pidfd_open(pid)
        poller = select.poll()
        poller.register(exited, select.POLLIN)
        timed_out = not poller.poll(timeout * 1000 if timeout else None)
        if timed_out:
            os.kill(pid, 9)
        os.close(exited)
        _, status = os.waitpid(pid, 0)
        if timed_out:
            raise InitError(f"error running hook #{index} (startContainer, {path}): "
                            f"hook ran past specified timeout of {timeout}.0s")
        if status != 0:  # (runc's words)
            import _signal  # type: ignore[import-not-found]  # (built in: nothing to find on a path)

            code = os.waitstatus_to_exitcode(status)
            raise InitError(f"error running hook #{index} (startContainer, {path}): "
                            + (f"exit status {code}" if code >= 0 else
                               f"signal: {(_signal.strsignal(-code) or str(-code)).lower()}"))


def run(spec: LaunchSpec, mode: Mode, sync: tuple[int, int], stdio: tuple[int, int, int],
        trees: list[int] | None = None, staged: str = "") -> NoReturn:
    """Set the container up, wait as ``mode`` says, exec. Never returns.

    ``trees`` come with a blank init (forkserver.py): it ran :func:`detach`,
    made its mounts private and staged the standard filesystems ahead; the
    trees are the rootfs and bind sources as the host has them now;
    ``staged`` is where the standard filesystems wait.
    """
    go, status = sync
    try:
        ready = prepare(spec, mode, sync, stdio, trees, staged)
        if mode.exec_fifo:
            # OCI: whatever cannot be applied fails create, not the start (runc's
            # order too): settled, then ready, then only the FIFO and exec are left.
            executable, user, env = ready
            execute.listener_channel = (status, go)
            settle(spec.process, spec.security, user)
            os.write(status, READY)
            os.close(status)  # nothing more to say: an exec that fails tells stderr (execute.fail)
            status = -1
            _wait_for_start(mode.fifo)
            _start_container_hooks(mode)
            os.execve(executable, spec.process.argv, env)
        if mode.says_ready():
            os.write(status, READY)
        become(spec.process, spec.security, *wait(spec, mode, go, ready))
    except BaseException as err:  # noqa: BLE001 - the child must never unwind
        fail(status, err, "container init")


def prepare(spec: LaunchSpec, mode: Mode, sync: tuple[int, int], stdio: tuple[int, int, int],
            trees: list[int] | None, staged: str) -> Resolved:
    """Up to ready: namespaces, rootfs, cgroup, bounding set; the program found (not for a warm sandbox)."""
    go, _ = sync
    namespaces, fs = spec.namespaces, spec.filesystem
    detached = trees is not None
    if namespaces.uid_mappings:
        # Before detach makes us non-dumpable: our uid_map would then be
        # root's, which a runtime without privileges could not write.
        if spec.pdeathsig:
            syscalls.set_pdeathsig(signals.SIGKILL)
        root_tree, trees = _wait_for_users(go)
    if not detached:
        detach(namespaces.clone_flags, spec.pdeathsig)
    # Directories of the host's cgroup hierarchies, opened before the pivot
    # (or a joined mount namespace) hides them; closed before exec.
    hierarchies = [os.open(mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) for mount, _ in spec.cgroup.join]
    if mode.exec_fifo:  # its directory is out of sight after the pivot
        mode.fifo = os.open(mode.exec_fifo, os.O_PATH | os.O_CLOEXEC)
    # Every path opened first: a joined mount namespace changes what they name.
    # (The clone put us in a joined pid namespace already: spawn.py.)
    joins = [(os.open(path, os.O_RDONLY | os.O_CLOEXEC), nstype)
             for path, nstype in namespaces.join if nstype != syscalls.CLONE_NEWPID]
    for namespace, nstype in joins:
        syscalls.setns(namespace, nstype)
        os.close(namespace)
    if namespaces.has(syscalls.CLONE_NEWNS) and not detached:
        # Nothing mounted from here on may propagate back to the host: every mount a
        # slave (runc's default), so that the host's later mounts under a bind's source
        # still reach the container where its propagation says so (rslave, rshared).
        # (A joined mount namespace is the container's: it gets the rootfs.)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_SLAVE)
    root_attached = False
    if namespaces.uid_mappings:
        try:
            _become_namespace_root(fs, root_tree)
        except OSError as err:
            raise InitError(f"rootfs: {err}") from None
        root_attached = True
    take_stdio(stdio, spec.process.preserve_fds)
    joined: list[bool] = []

    def join_cgroup() -> None:
        """Wait until the runtime has made the cgroup, and join it: as late as can be.

        While the runtime makes it, the rootfs is built; a cgroup mount,
        which shows the cgroup, waits for it (rootfs.setup calls this
        there); without one, the init joins once its rootfs is done.
        """
        if os.read(go, 1) != CGROUP:
            os._exit(1)
        try:
            _join_cgroup(hierarchies, spec.cgroup.join)
            if namespaces.clone_flags & syscalls.CLONE_NEWCGROUP:
                # Made now, not at the clone: a cgroup namespace is rooted
                # where its maker is, and the container must see its own
                # cgroup as / (0::/), as with runc and crun.
                syscalls.unshare(syscalls.CLONE_NEWCGROUP)
        except OSError as err:
            raise InitError(f"cgroup: {err.strerror or err}") from None
        joined.append(True)

    terminal = spec.process.terminal
    if terminal:
        from execdriver.linux import terminal as pty  # now: after the pivot the package is out of sight
    if mode.start_hooks:
        import select  # noqa: F401 - likewise, for _start_container_hooks
    if mode.warm:
        import marshal  # noqa: F401 - likewise, for wait()

        from execdriver.linux import fdpass, memory  # noqa: F401
    use_staged = staged if staged and rootfs.can_use_staged(
        fs, namespaces.joins(syscalls.CLONE_NEWNET) or namespaces.joins(syscalls.CLONE_NEWIPC)) else ""
    try:
        rootfs.setup(fs, trees, use_staged, join_cgroup, root_attached,
                     host_namespace=not namespaces.has(syscalls.CLONE_NEWNS))
    except (OSError, rootfs.RootfsError) as err:
        raise InitError(f"rootfs: {err}") from None
    if namespaces.domainname:
        syscalls.setdomainname(namespaces.domainname)
    resolved: Resolved = ("", users.User(0, 0, [0], "/"), {})  # a warm sandbox learns its process later
    if not mode.warm:
        if namespaces.hostname:
            syscalls.sethostname(namespaces.hostname)
        if spec.process.argv:  # (none: an OCI container created without a process, which start refuses)
            resolved = resolve(spec.process)
    if terminal:  # in the container's devpts, now that it is mounted
        pty.attach(spec.process.console_socket, spec.process.console_size)
    # Out of the bounding set now, while the runtime still works on the
    # cgroup (a blank init did it ahead): what stays effective is all the
    # init needs until exec.
    if not detached:
        capabilities.drop_bounding(spec.security.capabilities, spec.security.last_cap)
    if not joined:
        join_cgroup()
    return resolved


def wait(spec: LaunchSpec, mode: Mode, go: int, resolved: Resolved) -> Resolved:
    """From ready to the exec, as the launcher's ``mode`` says: at once, a go, a warm hand-over."""
    if mode.warm:
        return _wait_warm(spec, mode, go)
    elif mode.await_go and os.read(go, 1) != GO:
        os._exit(1)  # (with nothing for the runtime to do first, it sends no go: on at once)
    return resolved


def _wait_warm(spec: LaunchSpec, mode: Mode, go: int) -> Resolved:
    """A warm sandbox (pool.py): ready but for its process, which comes with the go, and its stdio."""
    from execdriver.linux import fdpass, memory

    security, process = spec.security, spec.process
    # The filter's load is the slowest step left (the kernel runs it for
    # every system call to cache the verdicts, ~1.5 ms): done ahead, as is
    # no_new_privileges. What follows until exec is all allowed by any
    # profile that lets a container start.
    if security.no_new_privileges:
        syscalls.set_no_new_privs()
    if security.seccomp_bpf:
        syscalls.seccomp_set_filter(security.seccomp_bpf)
    try:  # the template's user and program, most likely the container's too
        known: tuple[str, users.User] | None = (process.user, users.resolve(process.user))
    except users.UserError:
        known = None
    try:
        program: tuple[list[str], str] | None = (process.argv[:1] + process.env,
                                                find_executable(process.argv[0], process.env))
    except InitError:
        program = None
    set_oom_score_adj(security.oom_score_adj)  # part of the shape: the same for its container
    # The pages the steps after the go will write, written now (linux/memory.py);
    # or this sandbox reports them. (pool.py asks only where the filter, loaded
    # now, answers the calls this makes with an errno at worst.)
    if mode.prefault:
        memory.populate(mode.prefault)
    if mode.report_pages:
        _report_to(go)
    with fdpass.borrow(go) as channel:  # made ahead: its system calls are not the container's wait
        _wait_for_process(channel, process)
    security.seccomp_bpf, security.oom_score_adj = None, None  # (loaded, written: above)
    return resolve(process, known, program)


def _report_to(go: int) -> None:
    """Before exec, send the driver the pages this sandbox wrote (it reads them once we exec'd)."""
    from execdriver.linux import memory

    def report() -> None:
        data = memory.written_ranges()
        if len(data) > 1 << 15:
            return  # more than the socket surely buffers, and no one reads before we exec
        while data:
            data = data[os.write(go, data):]

    execute.report_pages = report


def _wait_for_process(channel: Socket, process: Process) -> None:
    """The hand-over (protocol.Handover) into ``process``, and three descriptors for stdin, stdout and stderr."""
    from execdriver.linux import fdpass

    message, fds = fdpass.recv_fds(channel, 1 << 20, 3)
    if len(fds) != 3 or not Handover.apply(message, process):
        os._exit(1)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    # (the runtime set the hostname from outside: pool.Sandbox.hand_over)


def _wait_for_users(go: int) -> tuple[list[int], list[int]]:
    """In a new user namespace, as the overflow id until the driver writes our mappings.

    Returns the id-mapped rootfs tree if one came, and the detached copies
    of the bind sources if they came (the runtime's root may open what our
    remapped root may not search): rootfs.setup attaches them.
    """
    from execdriver.linux import fdpass

    with fdpass.borrow(go) as channel:
        message, fds = fdpass.recv_fds(channel, 2, 253)
    if message[:1] != USERS:
        os._exit(1)
    return (fds[:1], fds[1:]) if message[1:] == b"R" else ([], fds)


def _become_namespace_root(fs: Filesystem, trees: list[int]) -> None:
    """Our ids are still the host's, which the namespace does not map: become its root.

    The root is mounted first, while the host's ids still search the
    runtime's directories (rootfs.attach_root); every capability in the
    namespace stays.
    """
    fs.mountpoint = rootfs.attach_root(fs, trees)
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


