"""Launchers: how a container's init comes to be ready, cold or warm, behind one interface.

``container.run`` reads as one straight path over a :class:`Launcher`:

* :class:`Cold` clones an init for the container (steps 2 to 5 of the
  lifecycle, :func:`bring_up`): the network reserved, the clone (by this
  process, or by the fork server, which hands over its blank init when
  the spec's profile matches: spawn.py), the cgroup made while the init
  builds its rootfs, the veth plugged in, READY awaited when anything
  waits for it.
* :class:`Warm` adopts a sandbox of the warm pool (pool.py), an init made
  ahead but for its process: its cgroup takes the id's name (cgroup v1),
  and the go carries the process.

Either way the run gets a Launch (the init's pid, a descriptor readable
at its exit) and the OOM watches, then calls ``go`` once its pre_start
callbacks ran, ``started`` once the process exec'd, ``finish`` at the end.
"""

from __future__ import annotations

import errno
import os
import select

from execdriver import faults, log
from execdriver.errors import ContainerError
from execdriver.linux import cgroups, process

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol

    from execdriver.linux.cgroups.base import Manager
    from execdriver.linux.fdpass import Socket
    from execdriver.linux.network import Attachment, Network
    from execdriver.native.pool import Sandbox
    from execdriver.native.protocol import Mode
    from execdriver.native.spawn import Launch, Spawner
    from execdriver.native.spec import LaunchSpec, Mapping
    from execdriver.native.state import State, StateStore

    Watch = tuple[int, int, Callable[[], None]]  # descriptor, poll events, callback

    # (A type alone: Cold and Warm are what runs.)
    class Launcher(Protocol):
        """Brings a container's init to ready; the run goes on from there."""

        def cgroup_path(self, spec: LaunchSpec) -> str:
            """The cgroup the container ends up in (a warm sandbox's, Warm.cgroup_path)."""

        def claimed(self) -> tuple[int, int]:
            """The init's (pid, start time) if it exists already (a warm sandbox's), for the first state."""

        def parent_levels(self, spec: LaunchSpec) -> int:
            """How many of the cgroup's parents its creation made."""

        def abandon(self) -> None:
            """The id could not be claimed: let go of what was made ahead."""

        def bring_up(self, store: StateStore, spec: LaunchSpec, stdio: tuple[int, int, int], state: State,
                     cgroup: Manager, handles: Handles,
                     on_oom: Callable[[], None] | None) -> tuple[Launch, list[Watch]]:
            """Steps 2 to 5: a ready init (or one going on unbidden), with the OOM watches."""

        def go(self, spec: LaunchSpec, stdio: tuple[int, int, int], handles: Handles) -> None:
            """Step 7: let it exec (a go, a hand-over with the process, or nothing: it went on)."""

        def started(self) -> None:
            """Its process exec'd."""

        def finish(self, parent_levels: int) -> None:
            """The container is over (or failed): what the launcher made that the run did not take over."""


class Cold:
    """An init cloned for this container; it waits for the go only when ``await_go`` (hooks, a network to finish)."""

    def __init__(self, spawner: Spawner, await_go: bool) -> None:
        self.spawner = spawner
        self.await_go = await_go

    def cgroup_path(self, spec: LaunchSpec) -> str:
        return spec.cgroup.path

    def claimed(self) -> tuple[int, int]:
        return 0, 0

    def parent_levels(self, spec: LaunchSpec) -> int:
        return spec.cgroup.parent_levels

    def abandon(self) -> None:
        pass

    def bring_up(self, store: StateStore, spec: LaunchSpec, stdio: tuple[int, int, int], state: State,
                 cgroup: Manager, handles: Handles, on_oom: Callable[[], None] | None) -> tuple[Launch, list[Watch]]:
        from execdriver.native.protocol import Mode

        return bring_up(store, self.spawner, spec, Mode(await_go=self.await_go), stdio, state, cgroup, handles,
                        on_oom)

    def go(self, spec: LaunchSpec, stdio: tuple[int, int, int], handles: Handles) -> None:
        if self.await_go:
            from execdriver.native.protocol import GO

            os.write(handles.go, GO)

    def started(self) -> None:
        pass

    def finish(self, parent_levels: int) -> None:
        pass


class Warm:
    """A warm sandbox of the spec's shape (pool.py), adopted: steps 2 to 5 were done ahead."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.adopted = False  # the sandbox's cgroup is the run's to remove (its state names it)

    def cgroup_path(self, spec: LaunchSpec) -> str:
        # The sandbox's: cgroup v2 renames no cgroup (EPERM), and moving the process to a new
        # one takes the threadgroup lock, which waits for an RCU grace period while the
        # container waits (syscalls.clone). On v1, keeping it measured 0.3 ms faster than
        # renaming its directory in every hierarchy.
        return self.sandbox.spec.cgroup.path

    def claimed(self) -> tuple[int, int]:
        return self.sandbox.pid, self.sandbox.pid_start

    def parent_levels(self, spec: LaunchSpec) -> int:
        return max(spec.cgroup.parent_levels, self.sandbox.parent_levels)

    def abandon(self) -> None:
        self.sandbox.discard()

    def bring_up(self, store: StateStore, spec: LaunchSpec, stdio: tuple[int, int, int], state: State,
                 cgroup: Manager, handles: Handles, on_oom: Callable[[], None] | None) -> tuple[Launch, list[Watch]]:
        """Its descriptors become the run's (its pid is in the state already), its OOM watch too."""
        sandbox = self.sandbox
        handles.launch = sandbox.launch
        handles.status = sandbox.status
        handles.fds.append(sandbox.status)
        handles.sockets.append(sandbox.go)
        prepared, sandbox.oom_watch = sandbox.oom_watch, None  # the run's descriptor now
        watches = oom_watches(sandbox.cgroup, on_oom, handles.fds, prepared)
        self.adopted = True
        return sandbox.launch, watches

    def go(self, spec: LaunchSpec, stdio: tuple[int, int, int], handles: Handles) -> None:
        self.sandbox.hand_over(spec, stdio)  # with its process and stdio

    def started(self) -> None:
        self.sandbox.collect_report()

    def finish(self, parent_levels: int) -> None:
        from execdriver.native.state import remove_tree

        if not self.adopted:
            self.sandbox.cgroup.destroy(parent_levels)
        remove_tree(self.sandbox.spec.state_dir)  # where its root was mounted


def expect(status: int, expected: bytes, container_id: str,
           listener: Callable[[int], None] | None = None) -> None:
    """The init's next message is ``expected``, or its error is raised.

    ``listener``: takes the number of a notifying seccomp filter's listener
    in the init (protocol.SECCOMP), which waits for its answer.
    """
    from execdriver.native.protocol import ERROR, READY, SECCOMP

    message = os.read(status, 65536)
    while listener is not None and message.startswith(SECCOMP):
        listener(int(message[len(SECCOMP):]))
        message = os.read(status, 65536)
    if message == expected:
        return
    if expected == READY and message.startswith(READY):
        # An init that need not wait for the go went on at once, and failed.
        message = message[len(READY):]
    if message.startswith(ERROR):
        raise ContainerError(f"container {container_id}: {message[1:].decode(errors='replace')}")
    raise ContainerError(f"container {container_id}: init exited before the process started")


class Handles:
    """What a start holds, for its finally: the init's launch, our descriptors."""

    def __init__(self) -> None:
        self.launch: Launch | None = None
        self.network: Attachment | None = None
        self.fds: list[int] = []
        self.sockets: list[Socket] = []
        self.go = self.status = -1

    def close(self) -> None:
        if self.launch is not None:
            self.launch.close()
        for fd in self.fds:
            os.close(fd)
        for sock in self.sockets:
            sock.close()

    def release_network(self) -> None:
        if self.network is not None:
            self.network.release()
            self.network = None

    def kill(self) -> None:
        """Kill and reap the init, if there is one."""
        if self.launch is not None:
            from execdriver.native.spawn import kill_and_reap  # loaded already: it made the launch

            kill_and_reap(self.launch)


def bring_up(store: StateStore, spawner: Spawner, spec: LaunchSpec, mode: Mode, stdio: tuple[int, int, int],
              state: State, cgroup: Manager, handles: Handles,
              on_oom: Callable[[], None] | None = None,
              on_listener: Callable[[int, int], None] | None = None) -> tuple[Launch, list[Watch]]:
    """Steps 2 to 5: network, clone the init, give it its cgroup and network, wait until it is ready.

    Also the OOM watch, on the new cgroup before the init may run anything.
    ``on_listener(pid, fd)``: a notifying seccomp filter's listener is the
    init's descriptor ``fd``: hand it to its agent (the init waits meanwhile).
    """
    from execdriver.native import protocol

    network = spec.network
    if network is not None and network.mode == "bridge":
        from execdriver.linux import network as networking

        handles.network = networking.reserve(spec.id, os.path.abspath(store.root), network,  # 2
                                             spec.namespaces.hostname)
        spec.filesystem.mounts = [*spec.filesystem.mounts, *handles.network.mounts()]
        network.token = handles.network.token
    users = spec.namespaces
    if users.uid_mappings:
        # A socket, not a pipe: the id-mapped rootfs crosses it (_map_users).
        go_read, handles.go = _socketpair()
        give_pipes(users.uid_mappings, users.gid_mappings, stdio)
    else:
        go_read, handles.go = os.pipe2(os.O_CLOEXEC)
    handles.status, status_write = os.pipe2(os.O_CLOEXEC)
    handles.fds += (handles.go, handles.status)
    limits = spec.cgroup.limits

    def meanwhile() -> None:
        # While the init is cloned and builds its rootfs: the claim's state
        # (before the cgroup, which it names for whoever cleans up after a
        # crash), then the cgroup, with the limits. On v1 the init joins by
        # itself (init.py says why); on v2 we move it.
        store.write_claim(state)
        cgroup.create(limits)

    log.debug(f"nsexec container setup: cloning the init of {spec.id} "
              f"(clone flags {spec.namespaces.clone_flags:#x}, {len(spec.namespaces.join)} namespaces joined)")
    try:
        launch = handles.launch = spawner.spawn(protocol.Request(spec, mode), (go_read, status_write), stdio,  # 3
                                                meanwhile=meanwhile, ours=tuple(handles.fds))  # 4
    finally:
        os.close(go_read)
        os.close(status_write)
    faults.point("cloned")
    log.debug(f"init cloned: pid {launch.pid}; cgroup {spec.cgroup.path or '(none)'} made")
    if users.uid_mappings:
        _map_users(spec, launch.pid, handles.go)
    watches: list[Watch] = []
    try:
        if not spec.cgroup.join and not spec.cgroup.into:  # else the init joins, or was born in it
            cgroup.add(launch.pid)
        # After the add, which is what makes a systemd scope, and before the init may run anything.
        watches = oom_watches(cgroup, on_oom, handles.fds)
        os.write(handles.go, protocol.CGROUP)
    except cgroups.CgroupError as err:
        if err.errno != errno.ESRCH:
            raise
        # The init already failed; its own message follows on the pipe.
    except BrokenPipeError:
        pass  # likewise
    state.pid, state.pid_start = launch.pid, process.start_time(launch.pid) or 0
    store.save(state)
    faults.point("saved")
    if handles.network is not None:
        handles.network.attach(launch.pid, network.mtu if network else 0)
    if mode.says_ready():
        listener = None
        if on_listener is not None:
            def listener(fd: int) -> None:
                on_listener(launch.pid, fd)
                os.write(handles.go, protocol.GO)
        expect(handles.status, protocol.READY, spec.id, listener)  # 5
        log.debug("child process in init(): rootfs built and pivoted into, the process found"
                  + (" and settled (user, capabilities, limits, seccomp)" if mode.exec_fifo else ""))
        if mode.exec_fifo:
            log.debug("init: closing the pipe to signal completion; it waits on the exec FIFO for start")
    faults.point("ready")
    if network is not None and network.mode == "container":
        _joined(store, network, launch.pid)
    return launch, watches


def _socketpair() -> tuple[int, int]:
    from execdriver.linux import fdpass

    ours, theirs = fdpass.pair(fdpass.SOCK_STREAM)
    return theirs.detach(), ours.detach()


def give_pipes(uid_mappings: list[Mapping], gid_mappings: list[Mapping], stdio: tuple[int, int, int]) -> None:
    """Pipes for the container's stdio belong to its root, so that it can reopen them (/dev/stdout)."""
    import stat

    from execdriver.linux import userns

    uid = userns.host_id(uid_mappings, 0)
    gid = userns.host_id(gid_mappings, 0)
    if os.geteuid() != 0 or uid is None or gid is None or uid == gid == 0:
        return
    for fd in stdio:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.fchown(fd, uid, gid)


def _map_users(spec: LaunchSpec, pid: int, go: int) -> None:
    """The init waits in its user namespace: write its mappings, hand it its id-mapped rootfs."""
    from execdriver.linux import fdpass, userns
    from execdriver.native.protocol import USERS

    userns.write(pid, spec.namespaces.uid_mappings, spec.namespaces.gid_mappings)
    if spec.security.oom_score_adj is not None and os.geteuid() == 0:
        # Its /proc/self files are the host root's while it is not dumpable: out of its reach.
        with open(f"/proc/{pid}/oom_score_adj", "w", encoding="utf-8") as handle:
            handle.write(str(spec.security.oom_score_adj))
    trees = []
    try:
        if spec.namespaces.idmap_root:
            trees.append(userns.idmapped_root(spec.filesystem.root.path, pid))
        if os.geteuid() == 0:
            # The bind sources, copied here, as runc opens them before the user namespace: its
            # remapped root may not search a directory the host's root may (0700, say).
            from execdriver.linux import syscalls

            trees += [syscalls.open_tree_clone(mount.source, recursive=bool(mount.flags & syscalls.MS_REC))
                      for mount in spec.filesystem.mounts if mount.is_bind]
        with fdpass.borrow(go) as channel:
            fdpass.send_fds(channel, USERS + (b"R" if spec.namespaces.idmap_root else b"-"), trees)
    finally:
        for tree in trees:
            os.close(tree)


def _joined(store: StateStore, network: Network, pid: int) -> None:
    """The container whose network the init joined (by /proc path) was still that container: say so."""
    from execdriver.linux import network as networking

    assert network.target is not None  # (command.complete_network)
    target, start = network.target
    if process.start_time(target) != start:
        raise ContainerError(f"network.container_id: container {network.container} exited while this one joined it")
    networking.joined(os.path.abspath(store.root), network.container, pid)


def oom_watches(cgroup: Manager, on_oom: Callable[[], None] | None, ours: list[int],
                 watch: tuple[int, int] | None = None, kills_before: int = 0) -> list[Watch]:
    """The OOM watch of the cgroup (``watch``: one opened ahead), its descriptor among ``ours``.

    Its callback calls ``on_oom`` for what happened since it last ran: once
    for each OOM kill the cgroup counted past ``kills_before`` (v2), or once
    for a notification of its eventfd (v1). It may run at any time, and runs
    once more after the container's exit. cgroup v2's memory.events wakes a
    poll on every change, not only on a kill: also each time reclaim holds
    the memory use at memory.max (writing 128 MiB of files under a 32 MiB
    limit woke it 182 times). And the kernel sends that wake-up from a
    worker, while it counts a kill before it sends the kill's SIGKILL. So
    the wake-up for an OOM that took the whole container (memory.oom.group)
    may come after the container's exit; the count is there by then.
    """
    if watch is None and on_oom is not None:
        watch = cgroup.oom_watch()
    if watch is None:
        return []
    fd, events = watch
    ours.append(fd)
    if on_oom is None:
        return []
    if events == select.POLLIN:
        def notified() -> None:
            try:
                os.read(fd, 8)  # an eventfd (non-blocking): reset its counter
            except BlockingIOError:
                return  # nothing came
            on_oom()

        return [(fd, events, notified)]
    seen = [kills_before]

    def counted() -> None:
        try:
            os.pread(fd, 4096, 0)  # a cgroup v2 events file: re-arm by reading
        except OSError:
            # The cgroup is gone (systemd removes an empty scope at once): its file
            # now wakes every poll. /dev/null in its place never has POLLPRI.
            null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            os.dup2(null, fd, inheritable=False)
            os.close(null)
            return
        kills = cgroup.oom_kills()  # (kept by the manager: systemd may remove a scope's cgroup once empty)
        for _ in range(kills - seen[0]):
            on_oom()
        seen[0] = max(kills, seen[0])

    return [(fd, events, counted)]


