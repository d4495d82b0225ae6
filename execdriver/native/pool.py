"""Warm sandboxes: containers made ahead, but for their process.

A sandbox is an init cloned from a *template* launch spec and taken as far
as it can go without its process: namespaces made, rootfs mounted and
pivoted into, standard filesystems, masked paths, bounding set cut, its
cgroup created with the template's limits and joined. It waits on its go
socket. ``container.run`` hands one to a Command of the same shape (every
launch spec field but the process's own and the names), which makes it a
container in a few system calls: the id's state claimed, the cgroup
renamed to the id's, the hostname set, then the go (protocol.Handover:
argv, env, user, cwd) with its three stdio descriptors; the init execs.

A sandbox serves one container and is never reused: its init becomes the
container's process. Idle, each costs one sleeping process (a fork of
the fork server: its pages shared), its namespaces, mounts (the rootfs bind
and /proc, /dev, /sys) and an empty cgroup in every hierarchy. The pool
refills in a thread of its own after each hand-out; ``warm(template, 0)``
and ``close()`` kill what is idle and remove its cgroups.
"""

from __future__ import annotations

import os
import threading

from execdriver.linux import cgroups, fdpass, process
from execdriver.native.spawn import kill_and_reap

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from execdriver.linux.cgroups.base import Manager
    from execdriver.linux.fdpass import Socket
    from execdriver.native.spawn import Launch, Spawner
    from execdriver.native.spec import LaunchSpec

    Template = Callable[[], LaunchSpec]  # a fresh template spec, with placeholder names


def shape(spec: LaunchSpec) -> bytes | None:
    """What a sandbox must have been made with to serve ``spec``; None if none can.

    A sandbox serves plain containers: no network set-up, user namespace,
    terminal or joined namespaces.
    """
    if (spec.network is not None or spec.namespaces.uid_mappings or spec.process.terminal or spec.namespaces.join
            or spec.filesystem.root.kind not in ("dir", "host")):
        return None
    return spec.shape()


class Sandbox:
    """An idle init, its sync descriptors and its cgroup (under its placeholder name)."""

    def __init__(self, launch: Launch, go: Socket, status: int, cgroup: Manager,
                 spec: LaunchSpec, learned: Callable[[bytes], None] | None = None) -> None:
        self.launch = launch
        self.go = go
        self.status = status
        self.cgroup = cgroup
        self.spec = spec
        self.learned = learned  # takes the pages it reports, if it is to report them (memory.py)
        self.oom_watch = cgroup.oom_watch()  # opened ahead too; it follows the cgroup's rename
        self.pid_start = process.start_time(launch.pid) or 0  # for the state, read here rather than at hand-out

    @property
    def pid(self) -> int:
        return self.launch.pid

    @property
    def parent_levels(self) -> int:
        """The parents its cgroup's creation made: whoever holds the cgroup last may remove them."""
        return self.spec.cgroup.parent_levels

    def exited(self) -> bool:
        import select

        poller = select.poll()
        poller.register(self.launch.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    def hand_over(self, spec: LaunchSpec, stdio: tuple[int, int, int]) -> None:
        """Go: the container's process and its stdio; its hostname first.

        The sandbox's seccomp filter is loaded already and may deny
        sethostname: this thread sets it, in the sandbox's UTS namespace.
        """
        from execdriver.native.protocol import Handover

        if spec.namespaces.hostname:
            _set_hostname(self.pid, spec.namespaces.hostname)
        fdpass.send_fds(self.go, Handover(spec.process).encode(), list(stdio))

    def collect_report(self) -> None:
        """Once its process exec'd: the pages it wrote after the go, for the next sandboxes to write ahead."""
        if self.learned is None:
            return
        chunks = []
        while True:
            try:
                chunk = self.go.recv(1 << 16, fdpass.MSG_DONTWAIT)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        if chunks:
            self.learned(b"".join(chunks))

    def discard(self) -> None:
        """Kill the idle init and remove what it held."""
        from execdriver.native.state import remove_tree

        kill_and_reap(self.launch)
        self.close()
        try:
            self.cgroup.destroy(self.parent_levels)
        except cgroups.CgroupError:
            pass
        remove_tree(self.spec.state_dir)

    def close(self) -> None:
        self.launch.close()
        self.go.close()
        os.close(self.status)
        if self.oom_watch is not None:
            os.close(self.oom_watch[0])


def _set_hostname(pid: int, hostname: str) -> None:
    from execdriver.linux import syscalls

    syscalls.in_namespace_of(pid, "uts", syscalls.CLONE_NEWUTS, lambda: syscalls.sethostname(hostname))


def prepare(spawner: Spawner, spec: LaunchSpec, pages: bytes | None = None,
            learned: Callable[[bytes], None] | None = None) -> Sandbox:
    """Clone an init from ``spec`` (a template's, with placeholder names) and take it to ready.

    ``pages``: what its last steps will write, for it to write ahead; else,
    with ``learned``, it reports them. Neither where its seccomp filter,
    loaded ahead, might kill the calls this takes (a profile other than the
    default: see command.process_security).
    """
    if spec.security.seccomp_bpf and not spec.security.seccomp_lenient:
        pages = learned = None
    from execdriver.native.launchers import expect
    from execdriver.native.protocol import CGROUP, READY, Mode, Request

    mode = Mode(warm=True, prefault=pages or b"", report_pages=not pages and learned is not None)
    cgroup = spec.cgroup.manager()
    os.makedirs(spec.state_dir, mode=0o700, exist_ok=True)  # the root's mount point
    ours, theirs = fdpass.pair(fdpass.SOCK_STREAM)
    status, status_write = os.pipe2(os.O_CLOEXEC)
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    limits = spec.cgroup.limits
    launch = None
    try:
        launch = spawner.spawn(Request(spec, mode), (theirs.fileno(), status_write), (null, null, null),
                               meanwhile=lambda: cgroup.create(limits), ours=(ours.fileno(), status))
        if not spec.cgroup.join and not spec.cgroup.into:  # else the init joins, or was born in it
            cgroup.add(launch.pid)
        os.write(ours.fileno(), CGROUP)
        expect(status, READY, spec.id)
    except BaseException:
        if launch is not None:
            kill_and_reap(launch)
            launch.close()
        ours.close()
        os.close(status)
        cgroup.destroy(spec.cgroup.parent_levels)
        raise
    finally:
        theirs.close()
        os.close(status_write)
        os.close(null)
    return Sandbox(launch, ours, status, cgroup, spec, learned if not pages else None)


class WarmPool:
    """Idle sandboxes by shape, kept at their size by a filler thread."""

    def __init__(self, spawner: Spawner) -> None:
        self._spawner = spawner
        self._lock = threading.Lock()
        self._idle: dict[bytes, list[Sandbox]] = {}
        self._wanted: dict[bytes, tuple[int, Template]] = {}  # shape: (size, what makes a template spec)
        self._wake = threading.Condition(self._lock)
        self._filler: threading.Thread | None = None
        self._closed = False
        self.errors: list[BaseException] = []
        self._pages: dict[bytes, bytes] = {}  # shape: the pages its sandboxes write after the go (memory.py)
        self._preparing: bytes | None = None  # the shape the filler is making a sandbox of

    def warm(self, key: bytes, size: int, template: Template) -> None:
        """Keep ``size`` sandboxes of shape ``key``; ``template()`` gives a fresh template spec. Fills now."""
        with self._lock:
            if size:
                self._wanted[key] = (size, template)
            else:
                self._wanted.pop(key, None)
            while self._preparing == key and len(self._idle.get(key, ())) >= size:
                self._wake.wait()  # the filler's sandbox of this shape, which it then keeps or removes
            idle = self._idle.setdefault(key, [])
            surplus = idle[size:]
            del idle[size:]
            missing = size - len(idle)
        for sandbox in surplus:
            sandbox.discard()
        for _ in range(missing):
            sandbox = self._prepare(key, template)
            with self._lock:
                self._idle.setdefault(key, []).append(sandbox)

    def take(self, key: bytes | None) -> Sandbox | None:
        """An idle sandbox of shape ``key``, if one is ready; call refill() once it has started."""
        if key is None:
            return None
        while True:
            with self._lock:
                idle = self._idle.get(key)
                sandbox = idle.pop(0) if idle else None
            if sandbox is None or not sandbox.exited():
                return sandbox
            sandbox.discard()  # killed while it waited (the OOM killer, an operator): never hand it out

    def refill(self) -> None:
        """Make up for what was taken: after the hand-over, so as not to compete with it for the CPU."""
        with self._lock:
            if self._short() is not None:
                self._ensure_filler()
                self._wake.notify()

    def _ensure_filler(self) -> None:
        if self._filler is None or not self._filler.is_alive():
            self._filler = threading.Thread(target=self._fill, name="execdriver-pool", daemon=True)
            self._filler.start()

    def _fill(self) -> None:
        while True:
            with self._lock:
                while not self._closed and not self._short():
                    self._wake.wait()
                if self._closed:
                    return
                key = self._short()
                assert key is not None
                template = self._wanted[key][1]
                self._preparing = key
            surplus: Sandbox | None = None
            try:
                sandbox = self._prepare(key, template)
                with self._lock:
                    if self._closed or key not in self._wanted:
                        surplus = sandbox
                    else:
                        self._idle.setdefault(key, []).append(sandbox)
                if surplus is not None:
                    surplus.discard()
            except BaseException as err:  # noqa: BLE001 - kept for the caller; the pool stops filling this shape
                with self._lock:
                    self.errors.append(err)
                    self._wanted.pop(key, None)
            finally:
                with self._lock:
                    self._preparing = None
                    self._wake.notify_all()  # warm() may wait for this shape

    def _prepare(self, key: bytes, template: Template) -> Sandbox:
        def learned(pages: bytes) -> None:
            with self._lock:
                self._pages[key] = pages

        with self._lock:
            pages = self._pages.get(key)
        return prepare(self._spawner, template(), pages, learned)

    def _short(self) -> bytes | None:
        for key, (size, _) in self._wanted.items():
            if len(self._idle.get(key, ())) < size:
                return key
        return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake.notify_all()
            idle = [sandbox for sandboxes in self._idle.values() for sandbox in sandboxes]
            self._idle.clear()
            self._wanted.clear()
        if self._filler is not None:
            self._filler.join()
        for sandbox in idle:
            sandbox.discard()
