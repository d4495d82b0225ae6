"""The fork server: a single-threaded interpreter that clones container inits.

Started by ForkServerSpawner as ``python -I -S`` with one SOCK_SEQPACKET
control socket. Each request is one message (protocol.frame): the spec's
profile (clone flags and capabilities, see spawn.profile), the paths a
blank needs copies of (spawn.tree_sources), what the server keeps to
clean up after the container (protocol.Request.kept: state directory,
cgroup, network lease) and the encoded protocol.Request, the child's part
alone, with six descriptors (reply socket, the init's two sync
pipe ends, stdin, stdout, stderr). It answers on the reply socket with
``P<pid>`` and the init's pidfd (or ``E<error>``) at once, and
``X<wait status>`` when that init exits; the server is the init's parent
and so the one that reaps it.

Creating namespaces and mounting the standard filesystems are the largest
costs of a start, so the server keeps one *blank* init ready: cloned into
fresh namespaces ahead of time, with everything done that does not depend on
a spec (rootfs.stage() mounts /proc, /dev and /sys under its private /tmp),
waiting for a spec and nothing else. A request with the blank's profile and
a directory rootfs gets the blank (it has never run anything), with
detached copies of the rootfs and the bind sources (open_tree, taken here
in the host's mount namespace, so that the blank sees the host's mounts as
they are now, not as they were when it was cloned). The server clones the
next blank once the request is answered. Its idle cost is one sleeping
process, its namespaces, and an empty proc, sysfs and small tmpfs.

When the control socket closes (the API process exited, or was killed) the
server kills every init it started, and its blank, reaps them, releases
their network leases, removes their cgroups and state directories and
exits: nothing outlives the program that ran it. If
the server itself is killed, each init dies with it (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import gc
import os
import select

from execdriver.linux import capabilities, fdpass, rootfs, signals, syscalls
from execdriver.native import init, protocol
from execdriver.native.spawn import clone_init

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from execdriver.linux.fdpass import Socket
    from execdriver.native.protocol import Kept


class _Child:
    def __init__(self, pid: int, pidfd: int, reply: Socket, kept: Kept | None) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.reply = reply
        self.kept = kept  # what to remove should the program that ran it die (protocol.Request.kept)


class _Blank:
    """An init cloned ahead of time, waiting on ``channel`` for its spec."""

    def __init__(self, pid: int, pidfd: int, profile: bytes, channel: Socket) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.profile = profile
        self.channel = channel


class _Server:
    def __init__(self, control: Socket, staging: str) -> None:
        self.control = control
        self.staging = staging
        self.poller = select.poll()
        self.poller.register(control, select.POLLIN)
        self.children: dict[int, _Child] = {}
        self.blank: _Blank | None = None
        self.blank_profile = b""
        self.owner = os.getppid()  # the program that started us (and owns the spares we may sweep)

    def _ours(self) -> tuple[int, ...]:
        """Descriptors a new clone must not keep."""
        fds = [self.control.fileno()]
        for child in self.children.values():
            fds += (child.pidfd, child.reply.fileno())
        if self.blank is not None:
            fds += (self.blank.pidfd, self.blank.channel.fileno())
        return tuple(fds)

    def _clone_blank(self, profile: bytes) -> None:
        flags, mask, last_cap = (int(part) for part in profile.split(b":"))
        channel, theirs = fdpass.pair()
        inherited = (*self._ours(), channel.fileno())
        pid, pidfd = syscalls.clone(flags)
        if pid == 0:
            keep = [cap for cap in range(last_cap + 1) if mask >> cap & 1]
            _wait_as_blank(theirs, inherited, flags, keep, last_cap, self.staging)
        theirs.close()
        self.blank = _Blank(pid, pidfd, profile, channel)

    def _take_blank(self, profile: bytes) -> _Blank | None:
        blank, self.blank = self.blank, None
        if blank is not None and (blank.profile != profile or _exited(blank.pidfd)):
            _discard(blank)
            blank = None
        return blank

    def handle(self) -> bool:
        message, fds = fdpass.recv_fds(self.control, 1 << 20, 7)
        if not message:
            return False
        reply = fdpass.wrap(fds[0])
        cgroup = fds[6] if len(fds) == 7 else -1  # the v2 cgroup to start the init in (spawn.born_in)
        try:
            profile, sources, kept, spec = protocol.unframe(message)  # (the request goes on undecoded)
            blank = self._take_blank(profile) if profile else None
            trees = _trees(sources) if blank is not None else None
            if blank is not None and trees is None:  # not a spec a blank can take
                self.blank, blank = blank, None
            if blank is not None:
                try:
                    fdpass.send_fds(blank.channel, spec, [*fds[1:6], *(trees or ())])
                except OSError:  # the blank died: clone afresh
                    _discard(blank)
                    blank = None
                finally:
                    for tree in trees or ():
                        os.close(tree)
            if blank is not None:
                if cgroup >= 0:
                    _move(blank, cgroup)
                blank.channel.close()
                pid, pidfd = blank.pid, blank.pidfd
            else:
                pid, pidfd = clone_init(protocol.decode(spec), (fds[1], fds[2]), (fds[3], fds[4], fds[5]),
                                        (*self._ours(), reply.fileno()), cgroup)
        except Exception as err:  # noqa: BLE001 - reported to the caller
            reply.send(protocol.FAILED + str(err).encode())
            reply.close()
            return True
        finally:
            for fd in fds[1:]:
                os.close(fd)
        self.children[pidfd] = _Child(pid, pidfd, reply, kept)
        self.poller.register(pidfd, select.POLLIN)
        fdpass.send_fds(reply, protocol.PID + b"%d" % pid, [pidfd])
        if profile:
            self.blank_profile = profile
        return True

    def reap(self, pidfd: int) -> None:
        self.poller.unregister(pidfd)
        child = self.children.pop(pidfd)
        _, status = os.waitpid(child.pid, 0)
        os.close(child.pidfd)
        try:
            child.reply.send(protocol.EXITED + b"%d" % status)
        except OSError:
            pass
        child.reply.close()

    def serve(self) -> None:
        while True:
            # With nothing else to do, get the next blank ready.
            ready = self.poller.poll(0 if self.blank is None and self.blank_profile else None)
            if not ready and self.blank is None and self.blank_profile:
                try:
                    self._clone_blank(self.blank_profile)
                except OSError:
                    self.blank_profile = b""  # cannot clone ahead: clone per request
                continue
            for fd, _ in ready:
                if fd == self.control.fileno():
                    if not self.handle():
                        self.shutdown()
                        return
                else:
                    self.reap(fd)

    def shutdown(self) -> None:
        """The program that ran the containers is gone: so are they, and all they held."""
        from execdriver.linux import cgroups
        from execdriver.native.state import remove_spares, remove_tree

        if self.blank is not None:
            _discard(self.blank)
        for child in self.children.values():
            signals.pidfd_send_signal(child.pidfd, signals.SIGKILL)
        for pidfd in list(self.children):
            kept = self.children[pidfd].kept
            self.reap(pidfd)
            if kept is None:
                continue  # a process of a container: nothing of its own to remove
            state_dir, cgroup_path, parent_levels, token, tree, unified = kept
            if token:
                _release_network(token)
            try:
                if cgroup_path:
                    cgroup = cgroups.manager(cgroup_path, unified=unified)
                    cgroup.kill()
                    cgroup.destroy(parent_levels)
                if tree:  # (its processes died with the init: a template's sandboxes, with their zygote)
                    cgroups.manager(tree, unified=unified).destroy()
            except cgroups.CgroupError:
                continue  # the state stays, so that clean(id) finds the cgroup
            remove_tree(state_dir)
        # The program's kept id directories (StateStore spares), if it could not remove them.
        remove_spares(os.path.dirname(self.staging), pid=self.owner)
        # The drivers kept the runtime's parent cgroup while they ran.
        from execdriver.native.spec import DEFAULT_CGROUP_PARENT

        cgroups.remove_if_empty(DEFAULT_CGROUP_PARENT)


def _release_network(token: str) -> None:
    """A bridged container's lease: its holder, the program, is gone."""
    import site
    import sys

    if not any(path.endswith("-packages") for path in sys.path):
        site.main()  # pyroute2 lives in site-packages; the server started without them (-S)
    from execdriver.linux import network

    try:
        network.release(token)
    except Exception:  # noqa: BLE001 - the next allocation collects what is left
        pass


def _trees(sources: list[str] | None) -> list[int] | None:
    """Detached copies of the spec's rootfs and bind sources, None if a blank cannot take it."""
    if sources is None:
        return None
    trees: list[int] = []
    try:
        for path in sources:
            trees.append(syscalls.open_tree_clone(path))
    except OSError:
        for tree in trees:
            os.close(tree)
        return None
    return trees


def _exited(pidfd: int) -> bool:
    """Whether our child has exited (it stays to be reaped)."""
    return os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _move(blank: _Blank, cgroup: int) -> None:
    """Move a blank, cloned before its cgroup was known, into it (the directory ``cgroup``).

    The write takes the kernel's threadgroup lock (syscalls.clone), and
    may wait for an RCU grace period: meanwhile the blank builds its
    rootfs and the runtime makes the rest of the cgroup, and neither waits
    for us until the runtime reads the pid that we send once this is done.
    """
    try:
        fd = os.open("cgroup.procs", os.O_WRONLY | os.O_CLOEXEC, dir_fd=cgroup)
        try:
            os.write(fd, b"%d" % blank.pid)
        finally:
            os.close(fd)
    except OSError:
        _discard(blank)
        raise


def _discard(blank: _Blank) -> None:
    blank.channel.close()  # end of file: the blank exits
    signals.pidfd_send_signal(blank.pidfd, signals.SIGKILL)
    os.waitpid(blank.pid, 0)
    os.close(blank.pidfd)


def _wait_as_blank(channel: Socket, inherited: tuple[int, ...], flags: int, keep: list[int],
                   last_cap: int, staging: str) -> NoReturn:
    """In the blank init: do what any init of its profile does, wait for a spec, be that init."""
    gc.disable()
    try:
        for fd in inherited:
            os.close(fd)
        init.detach(flags)
        capabilities.drop_bounding(keep, last_cap)
        if flags & syscalls.CLONE_NEWNS:
            syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
            rootfs.stage(staging)
        message, fds = fdpass.recv_fds(channel, 1 << 20, 64)
        channel.close()
        if message and len(fds) >= 5:
            spec, mode = protocol.decode_init(message)
            init.run(spec, mode, (fds[0], fds[1]), (fds[2], fds[3], fds[4]), trees=fds[5:],
                     staged=staging if flags & syscalls.CLONE_NEWNS else "")
    except BaseException:  # noqa: BLE001 - a blank that fails just exits; its user sees EOF
        pass
    os._exit(1)


def main(control_fd: int, staging: str) -> None:
    """``staging``: an empty directory of the runtime's, where blanks stage (rootfs.stage)."""
    signals.signal_ignore(signals.SIGINT)
    os.makedirs(staging, 0o700, exist_ok=True)
    # Out of the collector's reach: a collection writes to the header of every
    # object it goes through, and each page so written is one more that the
    # server and its live blank copy (copy-on-write). Its own per-request
    # objects are still collected.
    gc.freeze()
    _Server(fdpass.wrap(control_fd), staging).serve()
