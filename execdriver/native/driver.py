"""The native Linux driver: the reference's Driver, on namespaces and mounts.

It composes the pieces: spec.py validates a Command, spawn.py clones the
init, container.py runs the lifecycle, state.py keeps what other processes
need to find the container.
"""

from __future__ import annotations

import time

import execdriver
from execdriver.api import Command, ExitStatus, Hooks, Pipes, ProcessConfig, ResourceStats
from execdriver.driver import Driver
from execdriver.errors import NotRunningError, UnsupportedError
from execdriver.linux import process
from execdriver.native import container
from execdriver.native.spawn import DirectSpawner, ForkServerSpawner, Spawner
from execdriver.native.state import DEFAULT_ROOT, StateStore

_GONE_TIMEOUT = 10.0


class NativeDriver(Driver):
    """Runs containers with Linux namespaces.

    ``root`` is the state directory. ``fork_server`` (default True) clones
    containers from a single-threaded helper process, which is what makes
    ``run`` safe from threads; False clones from this process, which is
    faster but only safe while the program runs a single thread.
    """

    def __init__(self, root: str = DEFAULT_ROOT, fork_server: bool = True) -> None:
        self._store = StateStore(root)
        self._spawner: Spawner = ForkServerSpawner() if fork_server else DirectSpawner()

    def __enter__(self) -> NativeDriver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the fork server; containers still running under it are killed."""
        self._spawner.close()

    def run(self, command: Command, pipes: Pipes, hooks: Hooks | None = None) -> ExitStatus:
        return container.run(self._store, self._spawner, command, pipes, hooks)

    def exec(self, command: Command, process_config: ProcessConfig, pipes: Pipes,
             hooks: Hooks | None = None) -> int:
        raise UnsupportedError("exec into a running container is not supported by this driver yet")

    def kill(self, command: Command, sig: int) -> None:
        state = self._store.load_running(command.id)
        if not process.send_signal(state.pid, state.pid_start, sig):
            raise NotRunningError(f"Container is not running: {command.id}")

    def terminate(self, command: Command) -> None:
        self.kill(command, 9)

    def pause(self, command: Command) -> None:
        raise UnsupportedError("pause needs the freezer cgroup, which this driver does not manage yet")

    def unpause(self, command: Command) -> None:
        raise UnsupportedError("unpause needs the freezer cgroup, which this driver does not manage yet")

    def name(self) -> str:
        return f"native-{execdriver.__version__}"

    def get_pids_for_container(self, id: str) -> list[int]:
        state = self._store.load_running(id)
        namespace = process.pid_namespace(state.pid)
        if namespace is None:
            raise NotRunningError(f"Container is not running: {id}")
        return process.pids_in_namespace(namespace)

    def clean(self, id: str) -> None:
        state = self._store.load(id)
        if state is not None and state.alive():
            process.send_signal(state.pid, state.pid_start, 9)
            deadline = time.monotonic() + _GONE_TIMEOUT
            while state.alive() and time.monotonic() < deadline:
                time.sleep(0.005)
        self._store.remove(id)

    def stats(self, id: str) -> ResourceStats:
        raise UnsupportedError("stats need cgroups, which this driver does not manage yet")

    def update(self, command: Command) -> None:
        raise UnsupportedError("update needs cgroups, which this driver does not manage yet")

    def supports_hooks(self) -> bool:
        return True

    def list(self) -> list[str]:
        """Ids of the containers in this driver's state directory."""
        return self._store.ids()
