"""The Driver interface of the reference, and the registry of drivers."""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable

from execdriver.api import Command, ExitStatus, Hooks, Pipes, ProcessConfig, ResourceStats
from execdriver.errors import DriverAlreadyRegisteredError, DriverNotFoundError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Driver(abc.ABC):
    """What every execution driver offers (the reference's Driver interface)."""

    @abc.abstractmethod
    def run(self, command: Command, pipes: Pipes, hooks: Hooks | None = None) -> ExitStatus:
        """Run the container's process and block until it exits."""

    @abc.abstractmethod
    def exec(
        self,
        command: Command,
        process_config: ProcessConfig,
        pipes: Pipes,
        hooks: Hooks | None = None,
    ) -> int:
        """Run another process in the running container; return its exit code."""

    @abc.abstractmethod
    def kill(self, command: Command, sig: int) -> None:
        """Send ``sig`` to the container's init process."""

    @abc.abstractmethod
    def pause(self, command: Command) -> None:
        """Freeze every process of the container."""

    @abc.abstractmethod
    def unpause(self, command: Command) -> None:
        """Thaw a paused container."""

    @abc.abstractmethod
    def name(self) -> str:
        """The driver's name and version, e.g. ``native-0.1.0``."""

    @abc.abstractmethod
    def get_pids_for_container(self, id: str) -> list[int]:
        """Host pids of every process in the container."""

    @abc.abstractmethod
    def terminate(self, command: Command) -> None:
        """Kill the container with SIGKILL."""

    @abc.abstractmethod
    def clean(self, id: str) -> None:
        """Remove every trace of the container from the host."""

    @abc.abstractmethod
    def stats(self, id: str) -> ResourceStats:
        """A sample of the running container's resource use."""

    @abc.abstractmethod
    def update(self, command: Command) -> None:
        """Apply ``command.resources`` to the running container."""

    @abc.abstractmethod
    def supports_hooks(self) -> bool:
        """Whether the driver calls the hooks passed to run and exec."""


DriverFactory = Callable[..., Driver]

_registry: dict[str, DriverFactory] = {}
_registry_lock = threading.Lock()


def register_driver(name: str, factory: DriverFactory) -> None:
    """Make ``new_driver(name)`` build drivers with ``factory``."""
    with _registry_lock:
        if name in _registry:
            raise DriverAlreadyRegisteredError()
        _registry[name] = factory


def new_driver(name: str, **options: Any) -> Driver:
    """Build the driver registered under ``name`` with keyword ``options``."""
    with _registry_lock:
        factory = _registry.get(name)
    if factory is None:
        raise DriverNotFoundError()
    return factory(**options)


def registered_drivers() -> list[str]:
    with _registry_lock:
        return sorted(_registry)


def _native(**options: Any) -> Driver:
    # Imported here so that importing execdriver stays cheap.
    from execdriver.native.driver import NativeDriver

    return NativeDriver(**options)


register_driver("native", _native)
