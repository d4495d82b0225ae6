"""The lifecycle of one container, top to bottom.

``run`` takes a launch spec (spec.py) and three descriptors, and returns the
exit code; the driver (driver.py) translates Commands, Pipes and Hooks to
and from this, and the CLI calls it without them.

    1. claim      the id's state directory (state.py); a live id is refused
    2. clone      the init, in new namespaces (spawn.py, init.py)
    3. ready      the init built the rootfs and found the program
    4. pre_start  callbacks, with the init's host pid
    5. go         the init execs the program; end of file on sync proves it
    6. start      callback
    7. serve      the streams until the init exits; reap it
    8. post_stop  callbacks, every one even if one raises
    9. remove     the state directory (the namespaces and every mount in
                  them died with the init)

Any failure after step 1 kills the init (through its pidfd), reaps it and
removes the state before the error reaches the caller.
"""

from __future__ import annotations

import os
import select
import time

from execdriver.errors import ContainerError, NotRunningError
from execdriver.linux import process
from execdriver.native import init
from execdriver.native.state import StateStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from execdriver.native.spawn import Launch, Spawner

    PidCallback = Callable[[int], None]

_GONE_TIMEOUT = 10.0


def exit_code(status: int) -> int:
    """Docker's exit code: the process's own, or 128+signal."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _wait_readable(fd: int) -> None:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while not poller.poll():
        pass


def _expect(status: int, expected: bytes, container_id: str) -> None:
    message = os.read(status, 65536)
    if message == expected:
        return
    if message.startswith(init.ERROR):
        raise ContainerError(f"container {container_id}: {message[1:].decode(errors='replace')}")
    raise ContainerError(f"container {container_id}: init exited before the process started")


def run(
    store: StateStore,
    spawner: Spawner,
    launch_spec: dict[str, Any],
    stdio: tuple[int, int, int],
    *,
    serve: Callable[[int], None] | None = None,
    pre_start: Sequence[PidCallback] = (),
    start: PidCallback | None = None,
    post_stop: Sequence[PidCallback] = (),
) -> int:
    """Run the container to completion and return its exit code.

    ``serve(exit_fd)`` moves the streams until ``exit_fd`` is readable;
    without it the descriptors belong to the process alone.
    """
    container_id: str = launch_spec["id"]
    state = store.create(container_id, launch_spec["rootfs"])  # 1
    launch: Launch | None = None
    ours: tuple[int, ...] = ()
    reaped = False
    try:
        go_read, go_write = os.pipe2(os.O_CLOEXEC)
        status_read, status_write = os.pipe2(os.O_CLOEXEC)
        ours = (go_write, status_read)
        try:
            launch = spawner.spawn(launch_spec, (go_read, status_write), stdio)  # 2
        finally:
            os.close(go_read)
            os.close(status_write)
        state.pid, state.pid_start = launch.pid, process.start_time(launch.pid) or 0
        store.save(state)
        _expect(status_read, init.READY, container_id)  # 3
        for callback in pre_start:  # 4
            callback(launch.pid)
        os.write(go_write, init.GO)  # 5
        _expect(status_read, b"", container_id)
        if start is not None:  # 6
            start(launch.pid)
        if serve is not None:  # 7
            serve(launch.fileno())
        else:
            _wait_readable(launch.fileno())
        code = exit_code(launch.reap())
        reaped = True
        errors: list[Exception] = []
        for callback in post_stop:  # 8
            try:
                callback(launch.pid)
            except Exception as err:  # noqa: BLE001 - every post_stop callback runs
                errors.append(err)
        if errors:
            raise errors[0]
        return code
    finally:
        if launch is not None:
            if not reaped:
                launch.kill()
                try:
                    launch.reap()
                except (OSError, ContainerError):
                    pass
            launch.close()
        for fd in ours:
            os.close(fd)
        store.remove(container_id)  # 9


def kill(store: StateStore, container_id: str, signum: int) -> None:
    """Signal the container's init, wherever it was started from."""
    state = store.load_running(container_id)
    if not process.send_signal(state.pid, state.pid_start, signum):
        raise NotRunningError(f"Container is not running: {container_id}")


def pids(store: StateStore, container_id: str) -> list[int]:
    """Host pids of every process in the container's pid namespace."""
    state = store.load_running(container_id)
    namespace = process.pid_namespace(state.pid)
    if namespace is None:
        raise NotRunningError(f"Container is not running: {container_id}")
    return process.pids_in_namespace(namespace)


def clean(store: StateStore, container_id: str) -> None:
    """Kill whatever runs of the container and remove its state."""
    state = store.load(container_id)
    if state is not None and state.alive():
        process.send_signal(state.pid, state.pid_start, 9)
        deadline = time.monotonic() + _GONE_TIMEOUT
        while state.alive() and time.monotonic() < deadline:
            time.sleep(0.005)
    store.remove(container_id)
