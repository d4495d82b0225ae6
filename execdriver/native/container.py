"""The lifecycle of one container run, top to bottom.

    1. validate   Command -> launch spec (spec.py); nothing exists yet
    2. claim      the id's state directory (state.py); a live id is refused
    3. streams    Pipes -> three descriptors (console.py)
    4. clone      the init, in new namespaces (spawn.py, init.py)
    5. ready      the init built the rootfs and found the program
    6. pre_start  hooks, with the init's host pid
    7. go         the init execs the program; EOF on sync proves the exec
    8. start      hook
    9. serve      stdin/stdout/stderr until the init exits; reap it
   10. post_stop  hooks
   11. remove     the state directory (the namespaces and every mount in
                  them died with the init)

Any failure from step 4 on kills the init, reaps it and removes the state
before the error reaches the caller.
"""

from __future__ import annotations

import os
import socket

from execdriver.api import Command, ExitStatus, Hooks, OOMEvents, Pipes
from execdriver.console import StdConsole
from execdriver.errors import ContainerError
from execdriver.linux import process
from execdriver.native import init, spec
from execdriver.native.spawn import Launch, Spawner
from execdriver.native.state import StateStore


def exit_code(status: int) -> int:
    """Docker's exit code: the process's own, or 128+signal."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _expect_ready(sync: socket.socket, launch: Launch, container_id: str) -> None:
    message = sync.recv(65536)
    if message == init.READY:
        return
    _raise_init_failure(message, launch, container_id)


def _expect_exec(sync: socket.socket, launch: Launch, container_id: str) -> None:
    message = sync.recv(65536)
    if message:
        _raise_init_failure(message, launch, container_id)


def _raise_init_failure(message: bytes, launch: Launch, container_id: str) -> None:
    if message.startswith(init.ERROR):
        raise ContainerError(f"container {container_id}: {message[1:].decode(errors='replace')}")
    raise ContainerError(f"container {container_id}: init exited before the process started")


def run(store: StateStore, spawner: Spawner, command: Command, pipes: Pipes,
        hooks: Hooks | None = None) -> ExitStatus:
    """Run ``command`` to completion; see the module docstring for the steps."""
    hooks = hooks or Hooks()
    config = command.process_config
    launch_spec = spec.build(command, store.path(command.id))  # 1
    state = store.create(command.id, command.rootfs)  # 2
    console: StdConsole | None = None
    launch: Launch | None = None
    sync: socket.socket | None = None
    reaped = False
    oom = OOMEvents()
    try:
        console = StdConsole(config, pipes)  # 3
        sync, child_sync = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            launch = spawner.spawn(launch_spec, child_sync.fileno(), console.stdio)  # 4
        finally:
            child_sync.close()
            console.release_child_ends()
        state.pid, state.pid_start = launch.pid, process.start_time(launch.pid) or 0
        store.save(state)
        command.container_pid = launch.pid
        _expect_ready(sync, launch, command.id)  # 5
        for hook in hooks.pre_start:  # 6
            hook(config, launch.pid, oom)
        sync.send(init.GO)  # 7
        _expect_exec(sync, launch, command.id)
        sync.close()
        sync = None
        if hooks.start is not None:  # 8
            hooks.start(config, launch.pid, oom)
        console.transfer(launch.fileno())  # 9
        status = exit_code(launch.reap())
        reaped = True
        errors: list[BaseException] = []
        for hook in hooks.post_stop:  # 10
            try:
                hook(config, launch.pid, oom)
            except Exception as err:  # noqa: BLE001 - every post_stop hook runs
                errors.append(err)
        if errors:
            raise errors[0]
        return ExitStatus(status)
    finally:
        if launch is not None:
            if not reaped:
                launch.kill()
                try:
                    launch.reap()
                except (OSError, ContainerError):
                    pass
            launch.close()
        if sync is not None:
            sync.close()
        if console is not None:
            console.close()
        store.remove(command.id)  # 11
