"""execdriver: Docker's execution-driver API and a native Linux container runtime.

Public names load on first use, so that ``import execdriver`` (and the CLI's
start) stays cheap.
"""

from __future__ import annotations

import sys

from execdriver.errors import (
    ConfigError,
    ContainerError,
    ContainerExistsError,
    DriverAlreadyRegisteredError,
    DriverNotFoundError,
    ExecDriverError,
    NetworkError,
    NotRunningError,
    UnsupportedError,
    WaitTimeoutError,
)

__version__ = "0.1.0"

_LAZY = {
    "Command": "execdriver.api",
    "DriverCallback": "execdriver.api",
    "ExitStatus": "execdriver.api",
    "Hooks": "execdriver.api",
    "Mount": "execdriver.api",
    "Network": "execdriver.api",
    "NetworkInterface": "execdriver.api",
    "OOMEvents": "execdriver.api",
    "Pipes": "execdriver.api",
    "PortBinding": "execdriver.api",
    "Rlimit": "execdriver.api",
    "IDMap": "execdriver.api",
    "ProcessConfig": "execdriver.api",
    "ResourceStats": "execdriver.api",
    "Resources": "execdriver.api",
    "StdConsole": "execdriver.console",
    "Driver": "execdriver.driver",
    "new_driver": "execdriver.driver",
    "register_driver": "execdriver.driver",
    "registered_drivers": "execdriver.driver",
}

__all__ = [
    "Command",
    "ConfigError",
    "ContainerError",
    "ContainerExistsError",
    "Driver",
    "DriverAlreadyRegisteredError",
    "DriverCallback",
    "DriverNotFoundError",
    "ExecDriverError",
    "ExitStatus",
    "Hooks",
    "IDMap",
    "Mount",
    "Network",
    "NetworkError",
    "NetworkInterface",
    "NotRunningError",
    "OOMEvents",
    "Pipes",
    "PortBinding",
    "ProcessConfig",
    "ResourceStats",
    "Resources",
    "Rlimit",
    "StdConsole",
    "UnsupportedError",
    "WaitTimeoutError",
    "__version__",
    "new_driver",
    "register_driver",
    "registered_drivers",
]

TYPE_CHECKING = False  # importing typing costs milliseconds on the CLI's start path
if TYPE_CHECKING:
    from typing import Any

    from execdriver.api import (
        Command,
        DriverCallback,
        ExitStatus,
        Hooks,
        IDMap,
        Mount,
        Network,
        NetworkInterface,
        OOMEvents,
        Pipes,
        PortBinding,
        ProcessConfig,
        Resources,
        ResourceStats,
        Rlimit,
    )
    from execdriver.console import StdConsole
    from execdriver.driver import Driver, new_driver, register_driver, registered_drivers


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'execdriver' has no attribute {name!r}")
    __import__(module)  # importlib itself would cost a millisecond on the CLI's start
    value = getattr(sys.modules[module], name)
    globals()[name] = value
    return value
