"""The native Linux driver: the reference's Driver, on namespaces and mounts.

It composes the pieces: command.py turns a Command into a launch spec
(spec.py), spawn.py clones the init, container.py runs the lifecycle,
state.py keeps what other processes need to find the container.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import execdriver
from execdriver.api import (
    Command,
    DriverCallback,
    ExitStatus,
    Hooks,
    OOMEvents,
    Pipes,
    PortMap,
    ProcessConfig,
    ResourceStats,
)
from execdriver.console import StdConsole, TtyConsole
from execdriver.driver import Driver
from execdriver.errors import ConfigError
from execdriver.native import command as from_command
from execdriver.native import container
from execdriver.native.spawn import DirectSpawner, ForkServerSpawner, Spawner
from execdriver.native.state import DEFAULT_ROOT, StateStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from execdriver.linux.network import Network
    from execdriver.native.pool import WarmPool
    from execdriver.native.spec import LaunchSpec


class NativeDriver(Driver):
    """Runs containers with Linux namespaces.

    ``root`` is the state directory. ``fork_server`` (default True) clones
    containers from a single-threaded helper process, which is what makes
    ``run`` safe from threads; False clones from this process, which is
    faster but only safe while the program runs a single thread.
    ``subnet_pool`` (network, prefix length), by default ("10.98.0.0/16",
    24): where the subnets of the bridges it creates come from; any subnet
    the host routes already is skipped. ``cgroup_manager`` "systemd" puts
    each container in a transient scope that systemd makes
    (``execdriver-<id>.scope`` in the slice ``Command.cgroup_parent`` names,
    system.slice by default), as on a host whose kubelet and engines use
    the systemd cgroup driver; "cgroupfs" (the default) makes the
    directories itself.
    """

    def __init__(self, root: str = DEFAULT_ROOT, fork_server: bool = True,
                 subnet_pool: tuple[str, int] | None = None, cgroup_manager: str = "cgroupfs") -> None:
        if cgroup_manager not in ("cgroupfs", "systemd"):
            raise ConfigError(f"cgroup_manager: {cgroup_manager!r} is neither 'cgroupfs' nor 'systemd'")
        if cgroup_manager == "systemd":
            from execdriver.linux.cgroups import systemd

            if not systemd.running():
                raise ConfigError("cgroup_manager: systemd is not running on this host (use 'cgroupfs')")
        self._systemd = cgroup_manager == "systemd"
        self._store = StateStore(root, spares=4)
        self._fork_server = fork_server
        self._pool: WarmPool | None = None
        self._subnet_pool = subnet_pool
        if subnet_pool is not None:
            from execdriver.linux.network import ipam

            ipam.pool(subnet_pool)
        self._spawner: Spawner = (
            ForkServerSpawner(os.path.join(root, ".stage")) if fork_server else DirectSpawner()
        )

    @property
    def store(self) -> StateStore:
        """Where the containers' state lives (for what builds on the driver: execdriver.sandbox)."""
        return self._store

    @property
    def spawner(self) -> Spawner:
        """What clones the inits: the fork server, or this process (``fork_server`` False)."""
        return self._spawner

    def __enter__(self) -> NativeDriver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the fork server; containers still running under it are killed, idle sandboxes too."""
        if self._pool is not None:
            self._pool.close()
        self._spawner.close()
        self._store.close()

    def warm(self, template: Command, size: int) -> None:
        """Keep ``size`` sandboxes ready for Commands shaped like ``template``; 0 drops them.

        A sandbox is a container made ahead but for its process (pool.py):
        ``run`` of a Command with the same rootfs, mounts, limits and
        security (its id, process and hostname may differ) takes one and
        only execs its process; the pool refills behind it. Returns once
        ``size`` are ready. Each idle sandbox costs a sleeping process, its
        namespaces, mounts and an empty cgroup.
        """
        from execdriver.native import pool

        if self._pool is None:
            self._pool = pool.WarmPool(self._spawner)
        probe = from_command.build(dataclasses.replace(template, id="pool-probe"), self._store.path("pool-probe"),
                           self._network(template), systemd_cgroup=self._systemd)
        key = pool.shape(probe)
        if key is None:
            raise ConfigError("warm: this template cannot be made ahead (network, user namespace, terminal "
                              "or joined namespaces, or an overlay root)")

        def make() -> LaunchSpec:
            name = f"pool-{os.urandom(6).hex()}"
            return from_command.build(dataclasses.replace(template, id=name),
                              os.path.join(self._store.root, ".pool", name), self._network(template),
                              systemd_cgroup=self._systemd)

        self._pool.warm(key, size, make)

    def run(self, command: Command, pipes: Pipes, hooks: Hooks | None = None) -> ExitStatus:
        hooks = hooks or Hooks()
        launch_spec = from_command.build(command, self._store.path(command.id), self._network(command),
                                 systemd_cgroup=self._systemd)
        config = command.process_config
        oom = OOMEvents()

        def record_pid(pid: int) -> None:
            command.container_pid = pid

        def bind(hook: DriverCallback) -> Callable[[int], None]:
            return lambda pid: hook(config, pid, oom)

        sandbox = None
        if self._pool is not None:
            from execdriver.native import pool

            sandbox = self._pool.take(pool.shape(launch_spec))
            if sandbox is not None:
                refill = self._pool.refill
                hooks = dataclasses.replace(hooks, start=_after(hooks.start, lambda *_: refill()))
        console = _console(config, pipes)
        try:
            code, oom_killed = container.run(
                self._store, self._spawner, launch_spec, console.stdio,
                serve=console.transfer,
                ready=record_pid,
                pre_start=[bind(hook) for hook in hooks.pre_start],
                start=bind(hooks.start) if hooks.start is not None else None,
                post_stop=[bind(hook) for hook in hooks.post_stop],
                on_oom=oom.notify,
                keep_parent=self._fork_server and not command.cgroup_parent,  # the server removes only its own
                sandbox=sandbox,
            )
        finally:
            console.close()
        return ExitStatus(code, oom_killed)

    def _network(self, command: Command) -> Network | None:
        """The command's network, with what only the driver knows: the joined container, the pool."""
        return from_command.complete_network(from_command.network_of(command), self._store, self._subnet_pool)

    def exec(self, command: Command, process_config: ProcessConfig, pipes: Pipes,
             hooks: Hooks | None = None) -> int:
        hooks = hooks or Hooks()
        exec_spec = from_command.exec_spec(command, process_config, self._store.path(command.id))
        start = hooks.start

        def started(pid: int) -> None:
            if start is not None:
                start(process_config, pid, OOMEvents())

        console = _console(process_config, pipes)
        try:
            return container.exec_process(self._store, self._spawner, command.id, exec_spec, console.stdio,
                                          start=started, serve=console.transfer)
        finally:
            console.close()

    def kill(self, command: Command, sig: int) -> None:
        container.kill(self._store, command.id, sig)

    def terminate(self, command: Command) -> None:
        self.kill(command, 9)

    def pause(self, command: Command) -> None:
        container.pause(self._store, command.id)

    def unpause(self, command: Command) -> None:
        container.unpause(self._store, command.id)

    def name(self) -> str:
        return f"native-{execdriver.__version__}"

    def get_pids_for_container(self, id: str) -> list[int]:
        return container.pids(self._store, id)

    def clean(self, id: str) -> None:
        container.clean(self._store, id)

    def stats(self, id: str) -> ResourceStats:
        sample = container.stats(self._store, id)
        return ResourceStats(
            cgroup_stats=sample["cgroup_stats"],
            interfaces=sample["interfaces"],
            memory_limit=sample["memory_limit"],
            system_usage=sample["system_usage"],
        )

    def update(self, command: Command) -> None:
        container.update(self._store, command.id, from_command.limits_of(command.resources))

    def supports_hooks(self) -> bool:
        return True

    def ports(self, id: str) -> PortMap:
        """The ports the running container publishes, as nat.PortMap, with the host ports given to empty ones."""
        from execdriver.api import PortBinding
        from execdriver.linux.network import published

        result: PortMap = {}
        for protocol, host_ip, host_port, container_port in published(os.path.abspath(self._store.root), id):
            bindings = result.setdefault(f"{container_port}/{protocol}", [])
            assert bindings is not None
            bindings.append(PortBinding(host_ip=host_ip, host_port=str(host_port)))
        return result

    def list(self) -> list[str]:
        """Ids of the containers in this driver's state directory."""
        return self._store.ids()


def _after(first: DriverCallback | None, then: DriverCallback) -> DriverCallback:
    def both(config: ProcessConfig, pid: int, oom: OOMEvents) -> None:
        try:
            if first is not None:
                first(config, pid, oom)
        finally:
            then(config, pid, oom)
    return both


def _console(config: ProcessConfig, pipes: Pipes) -> StdConsole | TtyConsole:
    """The process's console, also set as ``config.terminal`` (the reference's Terminal) for resize."""
    console = TtyConsole(config, pipes) if config.tty else StdConsole(config, pipes)
    config.terminal = console
    return console
