"""The lifecycle of one container, top to bottom.

``run`` takes a launch spec (spec.py) and three descriptors, and returns the
exit code; the driver (driver.py) translates Commands, Pipes and Hooks to
and from this, and the CLI calls it without them. The messages to and from
the init are protocol.py's.

    1. claim      the id's state directory (state.py); a live id is refused,
                  a stale one's leftovers (cgroups) removed
  2-5 through a launcher (launchers.py): a cold init cloned, or a warm
      sandbox adopted
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

import os
import select
import time

from execdriver import faults, log
from execdriver.errors import ContainerError, NotRunningError
from execdriver.linux import cgroups, process
from execdriver.native.state import State, StateStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from execdriver.linux.cgroups import Limits
    from execdriver.linux.cgroups.base import Manager
    from execdriver.native.pool import Sandbox
    from execdriver.native.protocol import Mode
    from execdriver.native.spawn import Spawner
    from execdriver.native.spec import ExecSpec, LaunchSpec

    PidCallback = Callable[[int], None]
    Watch = tuple[int, int, Callable[[], None]]  # descriptor, poll events, callback

_GONE_TIMEOUT = 10.0


def exit_code(status: int) -> int:
    """Docker's exit code: the process's own, or 128+signal."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


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
    done already: it is adopted instead (launchers.Warm).

    ``serve(exit_fd, watches)`` moves the streams until ``exit_fd`` is
    readable, calling each watch's callback when its descriptor fires;
    without it the descriptors belong to the process alone. ``keep_parent``
    leaves the runtime's parent cgroup for the next container (the fork
    server removes it when it stops): creating and removing it in every
    hierarchy on every run would double the cgroup work. ``ready`` gets the
    init's pid once it is ready, without holding it back.

    Unless there are ``pre_start`` callbacks or a network to finish
    (_await_go), a cold init does not wait for the go: it goes on to exec
    as soon as it is ready, which saves a round trip between two processes.
    """
    from execdriver.native import launchers

    launcher: launchers.Launcher = (launchers.Warm(sandbox) if sandbox is not None
                                    else launchers.Cold(spawner, _await_go(spec, pre_start)))
    cgroup_path = launcher.cgroup_path(spec)
    cgroup = cgroups.manager(cgroup_path, unified=spec.cgroup.unified)
    pid, pid_start = launcher.claimed()
    try:
        state = store.create(spec.id, spec.rootfs, cgroup_path, launcher.parent_levels(spec),  # 1
                             on_stale=lambda old: _remove_leftovers(store, old), pid=pid, pid_start=pid_start,
                             cgroup_unified=spec.cgroup.unified)
    except BaseException:
        launcher.abandon()
        raise
    handles = launchers.Handles()
    reaped = False
    faults.point("claimed")
    try:
        launch, watches = launcher.bring_up(store, spec, stdio, state, cgroup, handles, on_oom)  # 2-5
        if ready is not None:
            ready(launch.pid)
        for callback in pre_start:  # 6
            callback(launch.pid)
        try:
            launcher.go(spec, stdio, handles)  # 7
        except BrokenPipeError:
            pass  # the init is gone (killed meanwhile): expect says so
        launchers.expect(handles.status, b"", spec.id)
        launcher.started()
        faults.point("started")
        if start is not None:  # 8
            start(launch.pid)
        if serve is not None:  # 9
            serve(launch.fileno(), watches)
        else:
            wait(launch.fileno(), watches)
        code = exit_code(launch.reap())
        reaped = True
        for _, _, check in watches:  # an OOM that took the container may wake the watch after its exit
            check()
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
        levels = 0 if keep_parent else state.cgroup_parent_levels
        launcher.finish(levels)
        # Should the cgroup resist, the state stays: clean(id) finds it there.
        cgroup.destroy(levels)
        if spec.cgroup.tree:  # (a template's: its sandboxes' cgroups, their processes gone with the zygote)
            cgroups.manager(spec.cgroup.tree, unified=spec.cgroup.unified).destroy()
        store.remove(spec.id, spare=True)  # (it holds state.json alone)


def _await_go(spec: LaunchSpec, pre_start: Sequence[PidCallback]) -> bool:
    """Whether a cold init must wait for the go: hooks to run, or a network to finish after it is ready.

    The veth of a bridge goes into its namespace, and a joined network is
    checked, after the init has its cgroup: its process must not run before.
    """
    network = spec.network
    return bool(pre_start) or (network is not None and network.mode in ("bridge", "container"))


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
        cgroup = old.cgroup_manager()
        if cgroup.exists():
            try:
                cgroup.kill()
            except cgroups.CgroupError:
                if cgroup.exists():
                    raise  # (else its run's own end removed it meanwhile, or systemd its empty scope)
        cgroup.destroy(old.cgroup_parent_levels)  # its parents too, should another's delete have taken it


def kill(store: StateStore, container_id: str, signum: int) -> None:
    """Signal the container's init, wherever it was started from.

    SIGKILL thaws a paused container: a frozen init would never die (v1).
    """
    state = store.load_running(container_id)
    if not process.send_signal(state.pid, state.pid_start, signum):
        raise NotRunningError(f"Container is not running: {container_id}")
    if signum == 9 and state.cgroup:
        manager = state.cgroup_manager()
        try:
            if manager.frozen():
                manager.thaw()
        except (OSError, cgroups.CgroupError):
            pass  # gone meanwhile


def _running_cgroup(store: StateStore, container_id: str) -> tuple[State, Manager]:
    state = store.load_running(container_id)
    if not state.cgroup:
        from execdriver.errors import UnsupportedError

        raise UnsupportedError(f"container {container_id} has no cgroup (it was started without privileges)")
    return state, state.cgroup_manager()


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
    """Change the limits of the running container, as runc update: those unset keep their values,
    and the device rules stay as they are (rewriting them would deny every device for a moment)."""
    wanted.check(update=True)
    with store.locked(container_id):
        state = store.load(container_id)
        if state is None or not state.alive():  # (created, running or paused: runc's too)
            raise NotRunningError(f"container {container_id} does not exist" if state is None else
                                  "container not running")  # runc's words
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


def clean(store: StateStore, container_id: str, loaded: State | None = None) -> None:
    """Kill whatever runs of the container and remove its cgroups and state.

    ``loaded``: its state, read by the caller under the id's lock.
    """
    state = loaded or store.load(container_id)
    if state is not None and state.alive():
        process.send_signal(state.pid, state.pid_start, 9)
        deadline = time.monotonic() + _GONE_TIMEOUT
        while state.alive() and time.monotonic() < deadline:
            time.sleep(0.005)
    # No state: a claim whose creator died before writing it, maybe after reserving its network.
    _remove_leftovers(store, state or State(container_id))
    faults.point("clean-removed")
    store.remove(container_id)


def guard(store: StateStore, container_id: str) -> None:
    """Fork a child that cleans up after this process if it is killed.

    For a single-threaded caller that runs a container in the foreground
    (the CLI's ``sandbox``): a bridged container holds things on the host
    (a lease, rules, maybe a bridge) that nothing else would release before
    the next start if this process died by SIGKILL. The child waits for our
    end; if the state still names us as its owner, the container was not
    cleaned up, and the child does it. Otherwise it just exits.
    """
    parent = os.getpid()
    parent_start = process.start_time(parent)
    pidfd = os.pidfd_open(parent)
    if os.fork():
        os.close(pidfd)
        return
    try:
        os.setsid()  # out of our process group: a signal to the group must not take it too
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, pidfd)
        os.closerange(max(pidfd, null) + 1, 1 << 16)
        select.select([pidfd], [], [])
        state = store.load(container_id)
        if state is not None and (state.owner, state.owner_start) == (parent, parent_start):
            clean(store, container_id)
    finally:
        os._exit(0)


# -- the OCI lifecycle: create leaves the init waiting, start releases it ------------

EXEC_FIFO = "exec.fifo"
SECCOMP_PROGRAM = "seccomp.bpf"


def create(store: StateStore, spawner: Spawner, spec: LaunchSpec, stdio: tuple[int, int, int],
           oci: dict[str, Any], on_created: Sequence[PidCallback] = (), start_mode: Mode | None = None,
           on_listener: Callable[[int, int], None] | None = None) -> State:
    """Create the container and leave its init waiting on the exec FIFO.

    Steps 1 to 4 of run; then ``on_created`` (the OCI prestart and
    createRuntime hooks) and the state, with ``oci`` (bundle, annotations,
    hooks) in it. ``start_mode``: what the init does after the FIFO (its
    startContainer hooks). ``on_listener(pid, fd)``: hand a notifying
    seccomp filter's listener, the init's ``fd``, to its agent. The init
    outlives this process: whoever reaps orphans here (the engine's shim as
    subreaper, or pid 1) reaps it.
    """
    from execdriver.native import launchers
    from execdriver.native.protocol import Mode

    container_id = spec.id
    cgroup = spec.cgroup.manager()
    if spec.cgroup.path and cgroup.exists():  # the engine's, or another container's: runc's checks
        try:
            frozen = cgroup.frozen()
        except (OSError, cgroups.CgroupError):
            frozen = False  # (no freezer directory there)
        if frozen:
            raise ContainerError("container's cgroup unexpectedly frozen")
        found = cgroup.pids()
        if found:
            log.warn(f"container's cgroup is not empty: {len(found)} process(es) found")
    state = store.create(container_id, spec.rootfs, spec.cgroup.path,
                         spec.cgroup.parent_levels, on_stale=lambda old: _remove_leftovers(store, old),
                         cgroup_unified=spec.cgroup.unified)
    state.oci = oci
    fifo = os.path.join(store.path(container_id), EXEC_FIFO)
    handles = launchers.Handles()
    done = False
    faults.point("claimed")
    try:
        # The seccomp program, compiled once: exec loads it from here rather than compile the
        # config's profile again (~13 ms for an engine's default profile). Empty: no filter.
        with open(os.path.join(store.path(container_id), SECCOMP_PROGRAM), "wb") as handle:
            handle.write(spec.security.seccomp_bpf or b"")
        os.mkfifo(fifo, 0o622)  # the init opens it as the container's user (init._wait_for_start)
        os.chmod(fifo, 0o622)  # (whatever our umask)
        users = spec.namespaces
        if users.uid_mappings and os.geteuid() == 0:
            # The init reopens it as the remapped root (init._wait_for_start).
            from execdriver.linux import userns

            os.chown(fifo, userns.host_id(users.uid_mappings, 0) or 0, userns.host_id(users.gid_mappings, 0) or 0)
        mode = start_mode or Mode()
        mode.exec_fifo = fifo
        launch, _ = launchers.bring_up(store, spawner, spec, mode, stdio, state, cgroup, handles,
                                       on_listener=on_listener)
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
                 serve: Callable[[int, Sequence[Watch]], None] | None = None, paused_too: bool = False,
                 on_listener: Callable[[int, int], None] | None = None) -> int:
    """Run ``spec``'s process inside the running container: its exit code.

    A paused container is refused, in runc's words, unless ``paused_too``:
    then the process joins it frozen, and runs once it is resumed.

    ``spec`` is the process and its security; the container's init and
    cgroup are filled in here. ``start`` gets its host
    pid once it has exec'd; ``serve`` moves its streams as for run. With
    ``detach`` it returns 0 at once, the process left to our parent or the
    nearest subreaper (an engine's shim). ``on_listener`` as for create.
    """
    from execdriver.native.protocol import ERROR, GO, SECCOMP, Request

    state = store.load(container_id)
    if state is None:
        raise NotRunningError(f"container {container_id} does not exist")
    current = status(store, state)
    if current == "paused" and not paused_too:
        raise NotRunningError("cannot exec in a paused container (use --ignore-paused to override)")
    if current not in ("running", "created", "paused"):
        raise NotRunningError(f"cannot exec in a {current} container")
    if os.readlink(f"/proc/{state.pid}/ns/user") != os.readlink("/proc/self/ns/user"):
        from execdriver.linux import userns
        from execdriver.native.launchers import give_pipes

        give_pipes(userns.read(state.pid, "uid_map"), userns.read(state.pid, "gid_map"), stdio)
    if spec.security.seccomp_notify:  # it reports its listener, and reads our answer: both ways
        from execdriver.linux import fdpass

        ours, theirs = fdpass.pair(fdpass.SOCK_STREAM)
        status_read, status_write = ours.detach(), theirs.detach()
    else:
        status_read, status_write = os.pipe2(os.O_CLOEXEC)
    spec.init = (state.pid, state.pid_start)
    if not spec.cgroup_tasks:  # (or the sub-cgroups the caller chose: OciRuntime.exec_spec)
        spec.cgroup_tasks = state.cgroup_manager().join_files() if state.cgroup else []
    log.debug(f"nsexec container setup: forking a process into the namespaces of {container_id} "
              f"(its init is pid {state.pid})")
    try:
        launch = spawner.spawn(Request(spec), (status_write, status_write), stdio, ours=(status_read,))
    finally:
        os.close(status_write)
    faults.point("exec-spawned")
    log.debug(f"child process in init(): pid {launch.pid} joins the cgroup and namespaces, then its user")
    reaped = False
    try:
        message = os.read(status_read, 65536)
        while message.startswith(SECCOMP) and on_listener is not None:
            on_listener(launch.pid, int(message[len(SECCOMP):]))
            os.write(status_read, GO)
            message = os.read(status_read, 65536)
        message += b"".join(iter(lambda: os.read(status_read, 65536), b""))  # EOF: it exec'd
        if not message:
            log.debug(f"setns_init: about to exec {spec.process.argv[0]!r}: done (end of file on its status pipe)")
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
            if state.cgroup_manager().frozen():
                return "paused"
        except (OSError, cgroups.CgroupError):
            pass
    return "running"


def start(store: StateStore, container_id: str, created: State | None = None) -> State:
    """Release a created container's init: it execs the process.

    ``created``: the state that create returned in this process (run), not
    read back: the init is our child, and its exit shows on its pidfd.
    """
    with store.locked(container_id):
        return _start(store, container_id, created)


def _start(store: StateStore, container_id: str, created: State | None) -> State:
    state = created or store.load(container_id)
    if state is None:
        raise NotRunningError(f"container {container_id} does not exist")
    current = "created" if created is not None else status(store, state)
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
        manager = state.cgroup_manager()
        if manager.exists():
            if current == "paused":
                manager.thaw()
            manager.kill()
    faults.point("delete-killed")
    clean(store, container_id, state)
    return state
