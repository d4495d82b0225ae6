"""The lifecycle of one container, top to bottom.

``run`` takes a launch spec (spec.py) and three descriptors, and returns the
exit code; the driver (driver.py) translates Commands, Pipes and Hooks to
and from this, and the CLI calls it without them. The messages to and from
the init are protocol.py's.

    1. claim      the id's state directory (state.py); a live id is refused,
                  a stale one's leftovers (cgroups) removed
    2. network    a bridged interface's address, host ports, rules and
                  /etc files reserved (linux/network)
    3. clone      the init, in new namespaces (spawn.py, init.py)
    4. cgroup     created with its limits, the init moved in, while the
                  init builds its rootfs; the veth into its network
                  namespace
    5. ready      the init built the rootfs and found the program (said
                  only when steps 6-7 or an OCI start wait for it)
    6. pre_start  callbacks, with the init's host pid
    7. go         the init execs the program; end of file on sync proves it
                  (when nothing waits for it, _await_go, it went on unbidden)
    8. start      callback
    9. serve      the streams (and OOM events) until the init exits; reap it
   10. post_stop  callbacks, every one even if one raises
   11. remove     the network lease (rules, veth, files, an unused bridge
                  of ours), the cgroup, then the state directory (the
                  namespaces and every mount in them died with the init)

Any failure after step 1 kills the init (through its pidfd), reaps it and
removes the network, the cgroup and the state before the error reaches the
caller.
"""

from __future__ import annotations

import errno
import os
import select
import time

from execdriver import faults
from execdriver.errors import ContainerError, NotRunningError
from execdriver.linux import cgroups, process
from execdriver.native.state import State, StateStore, remove_tree

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from execdriver.linux.cgroups import Limits
    from execdriver.linux.cgroups.base import Manager
    from execdriver.linux.network import Attachment, Network
    from execdriver.native.pool import Sandbox
    from execdriver.native.protocol import Mode
    from execdriver.native.spawn import Launch, Spawner
    from execdriver.native.spec import ExecSpec, LaunchSpec, Mapping

    PidCallback = Callable[[int], None]
    Watch = tuple[int, int, Callable[[], None]]  # descriptor, poll events, callback

_GONE_TIMEOUT = 10.0


def exit_code(status: int) -> int:
    """Docker's exit code: the process's own, or 128+signal."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def expect(status: int, expected: bytes, container_id: str) -> None:
    from execdriver.native.protocol import ERROR, READY

    message = os.read(status, 65536)
    if message == expected:
        return
    if expected == READY and message.startswith(READY):
        # An init that need not wait for the go went on at once, and failed.
        message = message[len(READY):]
    if message.startswith(ERROR):
        raise ContainerError(f"container {container_id}: {message[1:].decode(errors='replace')}")
    raise ContainerError(f"container {container_id}: init exited before the process started")


class _Handles:
    """What a start holds, for its finally: the init's launch, our descriptors."""

    def __init__(self) -> None:
        self.launch: Launch | None = None
        self.network: Attachment | None = None
        self.fds: list[int] = []
        self.sockets: list[Any] = []
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


def _adopt(sandbox: Sandbox, handles: _Handles) -> Launch:
    """A warm sandbox becomes the container: its descriptors are the run's (its pid is in the state already)."""
    handles.launch = sandbox.launch
    handles.status = sandbox.status
    handles.fds.append(sandbox.status)
    handles.sockets.append(sandbox.go)
    return sandbox.launch


def _bring_up(store: StateStore, spawner: Spawner, spec: LaunchSpec, mode: Mode, stdio: tuple[int, int, int],
              state: State, cgroup: Manager, handles: _Handles,
              on_oom: Callable[[], None] | None = None) -> tuple[Launch, list[Watch]]:
    """Steps 2 to 5: network, clone the init, give it its cgroup and network, wait until it is ready.

    Also the OOM watch, on the new cgroup before the init may run anything.
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
        _give_pipes(users.uid_mappings, users.gid_mappings, stdio)
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

    try:
        launch = handles.launch = spawner.spawn(protocol.Request(spec, mode), (go_read, status_write), stdio,  # 3
                                                meanwhile=meanwhile, ours=tuple(handles.fds))  # 4
    finally:
        os.close(go_read)
        os.close(status_write)
    faults.point("cloned")
    if users.uid_mappings:
        _map_users(spec, launch.pid, handles.go)
    watches: list[Watch] = []
    try:
        if not spec.cgroup.join:
            cgroup.add(launch.pid)
        # After the add, which is what makes a systemd scope, and before the init may run anything.
        watches = _oom_watches(cgroup, on_oom, handles.fds)
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
        expect(handles.status, protocol.READY, spec.id)  # 5
    faults.point("ready")
    if network is not None and network.mode == "container":
        _joined(store, network, launch.pid)
    return launch, watches


def _await_go(spec: LaunchSpec, pre_start: Sequence[PidCallback]) -> bool:
    """Whether the init must wait for the go: hooks to run, or a network to finish after it is ready.

    The veth of a bridge goes into its namespace, and a joined network is
    checked, after the init has its cgroup: its process must not run before.
    """
    network = spec.network
    return bool(pre_start) or (network is not None and network.mode in ("bridge", "container"))


def _socketpair() -> tuple[int, int]:
    from execdriver.linux import fdpass

    ours, theirs = fdpass.pair(fdpass.SOCK_STREAM)
    return theirs.detach(), ours.detach()


def _give_pipes(uid_mappings: list[Mapping], gid_mappings: list[Mapping], stdio: tuple[int, int, int]) -> None:
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
        with fdpass.borrow(go) as channel:
            fdpass.send_fds(channel, USERS, trees)
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


def run(
    store: StateStore,
    spawner: Spawner,
    spec: LaunchSpec,
    stdio: tuple[int, int, int],
    *,
    serve: Callable[[int, Sequence[Watch]], None] | None = None,
    pre_start: Sequence[PidCallback] = (),
    start: PidCallback | None = None,
    post_stop: Sequence[PidCallback] = (),
    on_oom: Callable[[], None] | None = None,
    keep_parent: bool = False,
    sandbox: Sandbox | None = None,
    ready: PidCallback | None = None,
) -> tuple[int, bool]:
    """Run the container to completion: (exit code, whether OOM kills happened).

    With a warm ``sandbox`` of the spec's shape (pool.py), steps 2 to 5 are
    done already: it is adopted instead (its cgroup renamed to the id's).

    ``serve(exit_fd, watches)`` moves the streams until ``exit_fd`` is
    readable, calling each watch's callback when its descriptor fires;
    without it the descriptors belong to the process alone. ``keep_parent``
    leaves the runtime's parent cgroup for the next container (the fork
    server removes it when it stops): creating and removing it in every
    hierarchy on every run would double the cgroup work. ``ready`` gets the
    init's pid once it is ready, without holding it back.

    Unless there are ``pre_start`` callbacks or a network to finish
    (_await_go), the init does not wait for the go: it goes on to exec as
    soon as it is ready, which saves a round trip between two processes.
    """
    from execdriver.native.protocol import GO, Mode

    container_id = spec.id
    cgroup_path = spec.cgroup.path
    # cgroup v2 renames no cgroup (EPERM): there a sandbox's container keeps the sandbox's.
    renames = sandbox is not None and cgroups.version() == 1
    if sandbox is not None and not renames:
        cgroup_path = sandbox.spec.cgroup.path
    cgroup = cgroups.manager(cgroup_path)
    try:
        parent_levels = max(spec.cgroup.parent_levels, sandbox.parent_levels if sandbox is not None else 0)
        state = store.create(container_id, spec.rootfs, cgroup_path,  # 1
                             parent_levels, on_stale=lambda old: _remove_leftovers(store, old),
                             pid=sandbox.pid if sandbox is not None else 0,
                             pid_start=sandbox.pid_start if sandbox is not None else 0)
    except BaseException:
        if sandbox is not None:
            sandbox.discard()
        raise
    handles = _Handles()
    reaped = False
    named = False  # a sandbox's cgroup under the id's name
    faults.point("claimed")
    try:
        await_go = sandbox is None and _await_go(spec, pre_start)
        if sandbox is not None:
            launch = _adopt(sandbox, handles)
            prepared, sandbox.oom_watch = sandbox.oom_watch, None  # the run's descriptor now
            watches = _oom_watches(sandbox.cgroup, on_oom, handles.fds, prepared)
            # The id's name, which the state gives and the end removes: before the
            # go, so that the container never sees its cgroup under another.
            if renames:
                cgroups.rename(sandbox.cgroup, spec.cgroup.path)
            named = True
        else:
            launch, watches = _bring_up(store, spawner, spec, Mode(await_go=await_go),  # 2-5
                                        stdio, state, cgroup, handles, on_oom)
        if ready is not None:
            ready(launch.pid)
        for callback in pre_start:  # 6
            callback(launch.pid)
        try:
            if sandbox is not None:
                sandbox.hand_over(spec, stdio)  # 7, with its process and stdio
            elif await_go:
                os.write(handles.go, GO)  # 7
        except BrokenPipeError:
            pass  # the init is gone (killed meanwhile): expect says so
        expect(handles.status, b"", container_id)
        if sandbox is not None:
            sandbox.collect_report()
        faults.point("started")
        if start is not None:  # 8
            start(launch.pid)
        if serve is not None:  # 9
            serve(launch.fileno(), watches)
        else:
            wait(launch.fileno(), watches)
        code = exit_code(launch.reap())
        reaped = True
        oom_killed = cgroup.oom_kills() > 0
        errors: list[Exception] = []
        for callback in post_stop:  # 10
            try:
                callback(launch.pid)
            except Exception as err:  # noqa: BLE001 - every post_stop callback runs
                errors.append(err)
        if errors:
            raise errors[0]
        return code, oom_killed
    finally:
        if not reaped:
            handles.kill()
        handles.close()
        handles.release_network()  # 11
        if sandbox is not None and not named:
            sandbox.cgroup.destroy(0 if keep_parent else state.cgroup_parent_levels)
        # Should the cgroup resist, the state stays: clean(id) finds it there.
        cgroup.destroy(0 if keep_parent else state.cgroup_parent_levels)
        store.remove(container_id, spare=True)  # (it holds state.json alone)
        if sandbox is not None:
            remove_tree(sandbox.spec.state_dir)  # where its root was mounted


def _oom_watches(cgroup: Manager, on_oom: Callable[[], None] | None, ours: list[int],
                 watch: tuple[int, int] | None = None) -> list[Watch]:
    """The OOM watch of the cgroup (``watch``: one opened ahead), its descriptor among ``ours``."""
    if watch is None and on_oom is not None:
        watch = cgroup.oom_watch()
    if watch is None:
        return []
    fd, events = watch
    ours.append(fd)
    if on_oom is None:
        return []

    def fired() -> None:
        if events == select.POLLIN:
            os.read(fd, 8)  # an eventfd: reset its counter
        else:
            try:
                os.pread(fd, 4096, 0)  # a cgroup v2 events file: re-arm by reading
            except OSError:
                # The cgroup is gone (systemd removes an empty scope at once): its file
                # now wakes every poll. /dev/null in its place never has POLLPRI.
                null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                os.dup2(null, fd, inheritable=False)
                os.close(null)
                return
            cgroup.oom_kills()  # noted now: systemd may remove a scope's cgroup as soon as it is empty
        on_oom()

    return [(fd, events, fired)]


def wait(exit_fd: int, watches: Sequence[Watch] = ()) -> None:
    """Block until ``exit_fd`` is readable, serving the watches meanwhile."""
    poller = select.poll()
    poller.register(exit_fd, select.POLLIN)
    callbacks = {}
    for fd, events, callback in watches:
        poller.register(fd, events)
        callbacks[fd] = callback
    while True:
        ready = [fd for fd, _ in poller.poll()]
        for fd in ready:  # the watches first: an OOM event may come with the exit
            if fd != exit_fd:
                callbacks[fd]()
        if exit_fd in ready:
            return


def _remove_leftovers(store: StateStore, old: State) -> None:
    """What a crashed container left on the host (its state is stale): network lease, cgroups."""
    from execdriver.linux import any_network_lease

    if any_network_lease():
        from execdriver.linux import network

        network.release_container(os.path.abspath(store.root), old.id)
    if old.cgroup:
        cgroup = cgroups.manager(old.cgroup)
        if cgroup.exists():
            cgroup.kill()
            cgroup.destroy(old.cgroup_parent_levels)


def kill(store: StateStore, container_id: str, signum: int) -> None:
    """Signal the container's init, wherever it was started from."""
    state = store.load_running(container_id)
    if not process.send_signal(state.pid, state.pid_start, signum):
        raise NotRunningError(f"Container is not running: {container_id}")


def _running_cgroup(store: StateStore, container_id: str) -> tuple[State, Manager]:
    state = store.load_running(container_id)
    if not state.cgroup:
        from execdriver.errors import UnsupportedError

        raise UnsupportedError(f"container {container_id} has no cgroup (it was started without privileges)")
    return state, cgroups.manager(state.cgroup)


def pids(store: StateStore, container_id: str) -> list[int]:
    """Host pids of every process in the container's cgroup."""
    return _running_cgroup(store, container_id)[1].pids()


def pause(store: StateStore, container_id: str) -> None:
    """Freeze every process of the container; returns once they are frozen."""
    with store.locked(container_id):
        _running_cgroup(store, container_id)[1].freeze()


def unpause(store: StateStore, container_id: str) -> None:
    with store.locked(container_id):
        _running_cgroup(store, container_id)[1].thaw()


def update(store: StateStore, container_id: str, wanted: Limits) -> None:
    """Change the limits of the running container."""
    wanted.check()
    with store.locked(container_id):
        _running_cgroup(store, container_id)[1].set(wanted, running=True)


def stats(store: StateStore, container_id: str) -> dict[str, Any]:
    """libcontainer's Stats of the running container, with Docker's extras."""
    state, cgroup = _running_cgroup(store, container_id)
    return {
        "cgroup_stats": cgroup.stats(),
        "interfaces": cgroups.interface_stats(state.pid),
        "memory_limit": cgroup.memory_limit(),
        "system_usage": cgroups.system_cpu_usage(),
    }


def clean(store: StateStore, container_id: str) -> None:
    """Kill whatever runs of the container and remove its cgroups and state."""
    state = store.load(container_id)
    if state is not None and state.alive():
        process.send_signal(state.pid, state.pid_start, 9)
        deadline = time.monotonic() + _GONE_TIMEOUT
        while state.alive() and time.monotonic() < deadline:
            time.sleep(0.005)
    # No state: a claim whose creator died before writing it, maybe after reserving its network.
    _remove_leftovers(store, state or State(container_id))
    faults.point("clean-removed")
    store.remove(container_id)


# -- the OCI lifecycle: create leaves the init waiting, start releases it ------------

EXEC_FIFO = "exec.fifo"
SECCOMP_PROGRAM = "seccomp.bpf"


def create(store: StateStore, spawner: Spawner, spec: LaunchSpec, stdio: tuple[int, int, int],
           oci: dict[str, Any], on_created: Sequence[PidCallback] = ()) -> State:
    """Create the container and leave its init waiting on the exec FIFO.

    Steps 1 to 4 of run; then ``on_created`` (the OCI prestart and
    createRuntime hooks) and the state, with ``oci`` (bundle, annotations,
    hooks) in it. The init outlives this process: whoever reaps orphans
    here (the engine's shim as subreaper, or pid 1) reaps it.
    """
    from execdriver.native.protocol import Mode

    container_id = spec.id
    cgroup = cgroups.manager(spec.cgroup.path)
    state = store.create(container_id, spec.rootfs, spec.cgroup.path,
                         spec.cgroup.parent_levels, on_stale=lambda old: _remove_leftovers(store, old))
    state.oci = oci
    fifo = os.path.join(store.path(container_id), EXEC_FIFO)
    handles = _Handles()
    done = False
    faults.point("claimed")
    try:
        # The seccomp program, compiled once: exec loads it from here rather than compile the
        # config's profile again (~13 ms for an engine's default profile). Empty: no filter.
        with open(os.path.join(store.path(container_id), SECCOMP_PROGRAM), "wb") as handle:
            handle.write(spec.security.seccomp_bpf or b"")
        os.mkfifo(fifo, 0o600)
        users = spec.namespaces
        if users.uid_mappings and os.geteuid() == 0:
            # The init reopens it as the remapped root (init._wait_for_start).
            from execdriver.linux import userns

            os.chown(fifo, userns.host_id(users.uid_mappings, 0) or 0, userns.host_id(users.gid_mappings, 0) or 0)
        launch, _ = _bring_up(store, spawner, spec, Mode(exec_fifo=fifo), stdio, state, cgroup, handles)
        for callback in on_created:
            callback(launch.pid)
        faults.point("created")
        done = True
        return state
    finally:
        if not done:
            handles.kill()
        handles.close()
        if not done:
            handles.release_network()
            cgroup.destroy(state.cgroup_parent_levels)
            store.remove(container_id)


def exec_process(store: StateStore, spawner: Spawner, container_id: str, spec: ExecSpec,
                 stdio: tuple[int, int, int], *, detach: bool = False,
                 start: PidCallback | None = None,
                 serve: Callable[[int, Sequence[Watch]], None] | None = None) -> int:
    """Run ``spec``'s process inside the running container: its exit code.

    ``spec`` is the process and its security; the container's init and
    cgroup are filled in here. ``start`` gets its host
    pid once it has exec'd; ``serve`` moves its streams as for run. With
    ``detach`` it returns 0 at once, the process left to our parent or the
    nearest subreaper (an engine's shim).
    """
    from execdriver.native.protocol import ERROR, Request

    state = store.load_running(container_id)
    current = status(store, state)
    if current not in ("running", "created"):
        raise NotRunningError(f"cannot exec in container {container_id}: it is {current}")
    if os.readlink(f"/proc/{state.pid}/ns/user") != os.readlink("/proc/self/ns/user"):
        from execdriver.linux import userns

        _give_pipes(userns.read(state.pid, "uid_map"), userns.read(state.pid, "gid_map"), stdio)
    status_read, status_write = os.pipe2(os.O_CLOEXEC)
    spec.init = (state.pid, state.pid_start)
    spec.cgroup_tasks = cgroups.manager(state.cgroup).join_files() if state.cgroup else []
    try:
        launch = spawner.spawn(Request(spec), (status_write, status_write), stdio, ours=(status_read,))
    finally:
        os.close(status_write)
    faults.point("exec-spawned")
    reaped = False
    try:
        message = b"".join(iter(lambda: os.read(status_read, 65536), b""))  # EOF: it exec'd
        if message:
            launch.reap()
            reaped = True
            text = message[1:] if message.startswith(ERROR) else message
            raise ContainerError(f"exec in container {container_id}: {text.decode(errors='replace')}")
        if start is not None:
            start(launch.pid)
        if detach:
            reaped = True  # not ours to reap: see above
            return 0
        if serve is not None:
            serve(launch.fileno(), ())
        else:
            wait(launch.fileno())
        code = exit_code(launch.reap())
        reaped = True
        return code
    finally:
        if not reaped:
            from execdriver.native.spawn import kill_and_reap

            kill_and_reap(launch)
        launch.close()
        os.close(status_read)


def status(store: StateStore, state: State) -> str:
    """The OCI status: creating, created, running, paused or stopped."""
    if state.pid == 0:
        return "creating" if state.busy() else "stopped"
    if not state.alive():
        return "stopped"
    if os.path.exists(os.path.join(store.path(state.id), EXEC_FIFO)):
        return "created"
    if state.cgroup:
        try:
            if cgroups.manager(state.cgroup).frozen():
                return "paused"
        except (OSError, cgroups.CgroupError):
            pass
    return "running"


def start(store: StateStore, container_id: str) -> State:
    """Release a created container's init: it execs the process."""
    with store.locked(container_id):
        return _start(store, container_id)


def _start(store: StateStore, container_id: str) -> State:
    state = store.load(container_id)
    if state is None:
        raise NotRunningError(f"container {container_id} does not exist")
    current = status(store, state)
    if current != "created":
        raise ContainerError(f"cannot start container {container_id}: it is {current}, not created")
    fifo = os.path.join(store.path(container_id), EXEC_FIFO)
    faults.point("start-begun")
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        pidfd = os.pidfd_open(state.pid)
    except ProcessLookupError:
        os.close(reader)
        raise ContainerError(f"cannot start container {container_id}: its init is gone") from None
    try:
        poller = select.poll()
        poller.register(reader, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        while True:
            events = dict(poller.poll())
            if reader in events and os.read(reader, 1):
                faults.point("start-released")
                break
            if pidfd in events:
                raise ContainerError(f"cannot start container {container_id}: its init exited")
            if reader in events:
                time.sleep(0.001)  # the writer has not come yet: a hang-up without data
    finally:
        os.close(reader)
        os.close(pidfd)
    os.unlink(fifo)
    return state


def delete(store: StateStore, container_id: str, force: bool = False) -> State | None:
    """Remove a stopped or created container (any with ``force``): cgroup and state.

    A created container's init is killed, as runc does: it never ran.

    Returns the state it removed, None when there was none.
    """
    with store.locked(container_id):
        return _delete(store, container_id, force)


def _delete(store: StateStore, container_id: str, force: bool) -> State | None:
    state = store.load(container_id)
    if state is None:
        if os.path.isdir(store.path(container_id)):  # a claim with no state: a crash while creating
            clean(store, container_id)
        return None
    current = status(store, state)
    if current not in ("stopped", "creating", "created") and not force:
        raise ContainerError(f"cannot delete container {container_id} that is not stopped: {current}")
    if current != "stopped" and state.cgroup:
        manager = cgroups.manager(state.cgroup)
        if manager.exists():
            if current == "paused":
                manager.thaw()
            manager.kill()
    faults.point("delete-killed")
    clean(store, container_id)
    return state
