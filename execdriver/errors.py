"""The errors of the execution driver.

The four sentinel errors of Docker's execdriver package become exception
classes that keep its messages. Everything the package raises on purpose
derives from :class:`ExecDriverError`, so callers can catch one class.
This module imports nothing, because the CLI's start path loads it first.
"""

from __future__ import annotations


class ExecDriverError(Exception):
    """Base class of every error that execdriver raises on purpose."""


class NotRunningError(ExecDriverError):
    """The container (or its process) is not running."""

    def __init__(self, message: str = "Container is not running") -> None:
        super().__init__(message)


class WaitTimeoutError(ExecDriverError, TimeoutError):
    """A wait for a container gave up."""

    def __init__(self, message: str = "Wait timeout reached") -> None:
        super().__init__(message)


class DriverAlreadyRegisteredError(ExecDriverError):
    """A second driver tried to register a name that is taken."""

    def __init__(
        self, message: str = "A driver already registered this docker init function"
    ) -> None:
        super().__init__(message)


class DriverNotFoundError(ExecDriverError, LookupError):
    """No driver is registered under the requested name."""

    def __init__(
        self, message: str = "The requested docker init has not been found"
    ) -> None:
        super().__init__(message)


class ConfigError(ExecDriverError, ValueError):
    """A Command (or its JSON) asks for something invalid or impossible here.

    The message names the field, e.g. ``process_config.arguments[1]: expected
    a string, got int``.
    """


class UsageError(ConfigError):
    """The command line contradicts itself or the config (a flag missing, a descriptor not open): exit 2."""


class ContainerError(ExecDriverError):
    """The container could not be created or started; nothing was left behind."""


class ContainerExistsError(ContainerError):
    """The container id is in use by a live container."""


class UnsupportedError(ExecDriverError):
    """The driver cannot do this (yet, or on this host); the message says why."""


class NetworkError(ContainerError):
    """The container's network could not be set up (a host port in use, a netlink failure).

    Nothing of it is left behind: no lease, rule, interface or bridge of ours.
    """
