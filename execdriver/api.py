"""The types of Docker's execdriver package, in Python.

Every Go struct of the reference becomes a dataclass with snake_case names.
Their JSON form keeps the Go field tags, in Go's field order and with Go's
encoding rules (nil slices and pointers are ``null``, fields tagged ``-`` are
left out, ``<``, ``>`` and ``&`` are escaped), so a :class:`Command` written
here reads exactly like one marshalled by the Go struct.

The reference documents the Windows build. Linux additions follow Docker's
Linux build of the same structs: ``ProcessConfig.privileged`` and
``ProcessConfig.user``, ``Command.readonly_rootfs``. Fields that Go keeps out
of JSON (``exec.Cmd``'s environment, ``ConsoleSize``) are plain attributes.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from execdriver.errors import (
    ConfigError,
    ContainerError,
    ContainerExistsError,
    DriverAlreadyRegisteredError,
    DriverNotFoundError,
    ExecDriverError,
    NotRunningError,
    WaitTimeoutError,
)
from execdriver.gojson import go_json, rfc3339nano

__all__ = [
    "Command",
    "ConfigError",
    "ContainerError",
    "ContainerExistsError",
    "DriverAlreadyRegisteredError",
    "DriverCallback",
    "DriverNotFoundError",
    "ExecDriverError",
    "ExitStatus",
    "Hooks",
    "Mount",
    "Network",
    "NetworkInterface",
    "NotRunningError",
    "OOMEvents",
    "Pipes",
    "PortBinding",
    "ProcessConfig",
    "ResourceStats",
    "Resources",
    "WaitTimeoutError",
]

TYPE_CHECKING = False  # typing costs milliseconds at start; mypy reads these imports
if TYPE_CHECKING:
    from typing import IO, Any, ClassVar

_INT64 = (-(2**63), 2**63 - 1)
_UINT16 = (0, 2**16 - 1)
_UINT64 = (0, 2**64 - 1)


# --------------------------------------------------------------------------
# JSON codec: one table per struct, (python attribute, JSON tag, kind).
# A kind is "str", "bool", an integer range, a dataclass type, or a tuple
# ("list", kind) / ("optional", kind) / ("portmap",).
# --------------------------------------------------------------------------



def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


def _decode(kind: Any, value: object, path: str) -> Any:
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {_type_name(value)}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {_type_name(value)}")
        return value
    if isinstance(kind, tuple) and len(kind) == 2 and isinstance(kind[0], int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {_type_name(value)}")
        low, high = kind
        if not low <= value <= high:
            raise ConfigError(f"{path}: {value} is out of range [{low}, {high}]")
        return value
    if isinstance(kind, tuple) and kind[0] == "optional":
        return None if value is None else _decode(kind[1], value, path)
    if isinstance(kind, tuple) and kind[0] == "list":
        if value is None:
            return None
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected an array, got {_type_name(value)}")
        return [_decode(kind[1], item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(kind, tuple) and kind[0] == "portmap":
        return _decode_portmap(value, path)
    if isinstance(kind, type) and issubclass(kind, _Struct):
        if value is None:  # Go leaves a struct value untouched on null
            return kind()
        return kind._from_obj(value, path)
    raise AssertionError(f"unknown kind {kind!r}")


def _encode(kind: Any, value: Any) -> Any:
    if isinstance(kind, tuple) and kind[0] == "optional":
        return None if value is None else _encode(kind[1], value)
    if isinstance(kind, tuple) and kind[0] == "list":
        return None if value is None else [_encode(kind[1], v) for v in value]
    if isinstance(kind, tuple) and kind[0] == "portmap":
        if value is None:
            return None
        return {
            port: None if bindings is None else [b._to_obj() for b in bindings]
            for port, bindings in sorted(value.items())  # Go sorts map keys
        }
    if isinstance(kind, type) and issubclass(kind, _Struct):
        return value._to_obj()
    return value


class _Struct:
    """Mixin giving a dataclass its Go JSON form from its ``_json`` table."""

    _json: ClassVar[tuple[tuple[str, str, Any], ...]]

    @classmethod
    def _from_obj(cls, obj: object, path: str = "") -> Any:
        where = path or cls.__name__
        if not isinstance(obj, dict):
            raise ConfigError(f"{where}: expected an object, got {_type_name(obj)}")
        known = {tag for _, tag, _ in cls._json}
        for key in obj:
            if key not in known:
                raise ConfigError(f"{_join(path, key)}: unknown field")
        values = {
            attr: _decode(kind, obj[tag], _join(path, tag))
            for attr, tag, kind in cls._json
            if tag in obj
        }
        return cls(**values)

    def _to_obj(self) -> dict[str, Any]:
        return {tag: _encode(kind, getattr(self, attr)) for attr, tag, kind in self._json}

    @classmethod
    def from_json(cls, text: str | bytes) -> Any:
        """Parse the Go JSON form; errors name the offending field."""
        import json

        try:
            obj = json.loads(text)
        except (ValueError, UnicodeDecodeError) as err:
            raise ConfigError(f"{cls.__name__}: invalid JSON: {err}") from None
        return cls._from_obj(obj)

    def to_json(self) -> str:
        """The JSON text that Go's encoding/json writes for this struct."""
        return go_json(self._to_obj())


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _decode_portmap(value: object, path: str) -> dict[str, list[PortBinding] | None] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected an object, got {_type_name(value)}")
    result: dict[str, list[PortBinding] | None] = {}
    for port, bindings in value.items():
        where = f"{path}[{port!r}]"
        proto_ok = port.partition("/")[2] in ("", "tcp", "udp", "sctp")
        number = port.partition("/")[0]
        if not (proto_ok and number.isascii() and number.isdigit() and 0 < int(number) < 65536) and not (
            proto_ok and _is_port_range(number)
        ):
            raise ConfigError(f"{where}: not a port like '80/tcp'")
        result[port] = _decode(("list", PortBinding), bindings, where)
    return result


def _is_port_range(text: str) -> bool:
    low, sep, high = text.partition("-")
    return (bool(sep) and (low + high).isascii() and low.isdigit() and high.isdigit()
            and 0 < int(low) <= int(high) < 65536)


# --------------------------------------------------------------------------
# The structs
# --------------------------------------------------------------------------


@dataclass
class Mount(_Struct):
    """A bind mount of a host path into the container."""

    source: str = ""
    destination: str = ""
    writable: bool = False

    _json = (
        ("source", "source", "str"),
        ("destination", "destination", "str"),
        ("writable", "writable", "bool"),
    )


@dataclass
class PortBinding(_Struct):
    """One host side of a published port (Docker's nat.PortBinding)."""

    host_ip: str = ""
    host_port: str = ""

    _json = (
        ("host_ip", "HostIp", "str"),
        ("host_port", "HostPort", "str"),
    )


PortMap = dict[str, list[PortBinding] | None]


@dataclass
class NetworkInterface(_Struct):
    """A bridged interface; ``port_bindings`` is Docker's nat.PortMap."""

    mac_address: str = ""
    bridge: str = ""
    ip_address: str = ""
    port_bindings: PortMap | None = None

    _json = (
        ("mac_address", "mac", "str"),
        ("bridge", "bridge", "str"),
        ("ip_address", "ip", "str"),
        ("port_bindings", "port_bindings", ("portmap",)),
    )


@dataclass
class Network(_Struct):
    """The container's network: a bridged interface, another container's, or the host's.

    The reference's two fields, then two of Docker's Linux build (with its
    JSON tags): ``host_networking`` keeps the host's network namespace,
    ``mtu`` (0: the bridge's) sets the bridged interface's. Without a
    Network, or with none of these, the container has loopback alone. A
    bridge that does not exist is created, with a subnet from the driver's
    pool; ``interface.bridge`` "" means "execdriver0".
    """

    interface: NetworkInterface | None = None
    container_id: str = ""
    mtu: int = 0
    host_networking: bool = False

    _json = (
        ("interface", "interface", ("optional", NetworkInterface)),
        ("container_id", "container_id", "str"),
        ("mtu", "mtu", _INT64),
        ("host_networking", "host_networking", "bool"),
    )


@dataclass
class Rlimit(_Struct):
    """A resource limit of the container's processes (go-units' Rlimit).

    ``type`` is the RLIMIT_* number, as Python's ``resource`` module names
    them (``resource.RLIMIT_NOFILE``).
    """

    type: int = 0
    hard: int = 0
    soft: int = 0

    _json = (
        ("type", "type", (0, 15)),
        ("hard", "hard", _UINT64),
        ("soft", "soft", _UINT64),
    )


@dataclass
class IDMap(_Struct):
    """``size`` ids from ``container_id`` in the container are ``host_id`` on in the host (idtools.IDMap)."""

    container_id: int = 0
    host_id: int = 0
    size: int = 0

    _json = (
        ("container_id", "container_id", (0, 2**32 - 2)),
        ("host_id", "host_id", (0, 2**32 - 2)),
        ("size", "size", (1, 2**32 - 1)),
    )


@dataclass
class Resources(_Struct):
    """cgroup limits; 0 (or "") means unset.

    The reference's three fields, then those of Docker's Linux build (with
    its JSON tags): ``memory_swap`` counts memory plus swap (-1: unlimited
    swap), ``cpu_quota``/``cpu_period`` in microseconds, ``pids_limit`` (-1:
    unlimited). A limit this host's cgroups cannot apply is an error, never
    dropped.
    """

    memory: int = 0
    memory_reservation: int = 0
    blkio_weight: int = 0
    cpu_shares: int = 0
    memory_swap: int = 0
    cpu_quota: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    cpu_period: int = 0
    oom_kill_disable: bool = False
    pids_limit: int = 0
    rlimits: list[Rlimit] | None = None

    _json = (
        ("memory", "memory", _INT64),
        ("memory_reservation", "memory_reservation", _INT64),
        ("blkio_weight", "blkio_weight", _UINT16),
        ("cpu_shares", "cpu_shares", _INT64),
        ("memory_swap", "memory_swap", _INT64),
        ("cpu_quota", "cpu_quota", _INT64),
        ("cpuset_cpus", "cpuset_cpus", "str"),
        ("cpuset_mems", "cpuset_mems", "str"),
        ("cpu_period", "cpu_period", _INT64),
        ("oom_kill_disable", "oom_kill_disable", "bool"),
        ("pids_limit", "pids_limit", _INT64),
        ("rlimits", "rlimits", ("list", Rlimit)),
    )


@dataclass
class ProcessConfig(_Struct):
    """The process to run: ``entrypoint`` and ``arguments`` (argv[1:]).

    ``env`` stands for the environment of Go's embedded exec.Cmd, which Go
    keeps out of JSON (so does this class); ``None`` gives a default PATH.
    ``user`` is ``uid[:gid]`` or ``name[:group]`` from the container's
    /etc/passwd and /etc/group. A process keeps Docker's default
    capabilities; ``privileged`` keeps them all.
    """

    tty: bool = False
    entrypoint: str = ""
    arguments: list[str] | None = None
    privileged: bool = False
    user: str = ""
    env: list[str] | None = None
    console_size: tuple[int, int] = (0, 0)
    # The reference's Terminal (json:"-"): the console a run or exec attached,
    # whose resize(height, width) and close() a hook may call.
    terminal: Any = field(default=None, repr=False, compare=False)

    _json = (
        ("tty", "tty", "bool"),
        ("entrypoint", "entrypoint", "str"),
        ("arguments", "arguments", ("list", "str")),
        ("privileged", "privileged", "bool"),
        ("user", "user", "str"),
    )


@dataclass
class Command(_Struct):
    """A container to run: the reference's Command with its CommonCommand.

    Linux meanings of the Windows fields: ``hostname`` is the UTS hostname;
    ``layer_paths`` (read-only layers, top first) and ``layer_folder`` (the
    writable layer, holding ``diff/`` and ``work/``) compose an overlayfs
    root when ``rootfs`` is empty; ``isolation`` may be "", "default" or
    "process"; "hyperv" and ``hv_partition`` are refused. ``first_start`` and
    ``args_escaped`` concern Windows only and change nothing here.
    ``rootfs`` "/" is the host's own filesystem, seen read-only through a
    private root (see docs/architecture.md). The container's cgroup is
    ``<cgroup_parent>/<id>`` in every hierarchy, ``execdriver/<id>`` by
    default.

    After ``cgroup_parent``, the security fields of Docker's Linux build,
    with its JSON tags: ``cap_add``/``cap_drop`` (names, with or without
    CAP_, or ALL) change Docker's default capabilities; ``seccomp_profile``
    is "" for Docker's default profile, "unconfined", or a profile in
    Docker's JSON format; ``apparmor_profile`` needs AppArmor on the host;
    ``uid_mapping``/``gid_mapping`` put the container in a user namespace.
    ``masked_paths`` and ``readonly_paths`` (None: Docker's) and ``umask``
    (None: 022; a pointer in Go, as OCI's) complete them. ``init`` runs
    the process under a reaper as pid 1 (tini, as docker run --init does),
    which reaps orphaned zombies and passes signals on. ``process_config.privileged`` means every
    capability, no seccomp, no masked paths and every device.
    """

    container_pid: int = 0
    id: str = ""
    mount_label: str = ""
    mounts: list[Mount] | None = None
    network: Network | None = None
    process_config: ProcessConfig = field(default_factory=ProcessConfig)
    process_label: str = ""
    resources: Resources | None = None
    rootfs: str = ""
    working_dir: str = ""
    tmpdir: str = ""
    first_start: bool = False
    hostname: str = ""
    layer_folder: str = ""
    layer_paths: list[str] | None = None
    isolation: str = ""
    args_escaped: bool = False
    hv_partition: bool = False
    readonly_rootfs: bool = False
    cgroup_parent: str = ""
    cap_add: list[str] | None = None
    cap_drop: list[str] | None = None
    seccomp_profile: str = ""
    apparmor_profile: str = ""
    no_new_privileges: bool = False
    oom_score_adj: int = 0  # 0 leaves the caller's (a user session's is 100, which only root may lower)
    uid_mapping: list[IDMap] | None = None
    gid_mapping: list[IDMap] | None = None
    masked_paths: list[str] | None = None
    readonly_paths: list[str] | None = None
    umask: int | None = None
    init: bool = False

    _json = (
        ("container_pid", "container_pid", _INT64),
        ("id", "id", "str"),
        ("mount_label", "mount_label", "str"),
        ("mounts", "mounts", ("list", Mount)),
        ("network", "network", ("optional", Network)),
        ("process_config", "process_config", ProcessConfig),
        ("process_label", "process_label", "str"),
        ("resources", "resources", ("optional", Resources)),
        ("rootfs", "rootfs", "str"),
        ("working_dir", "working_dir", "str"),
        ("tmpdir", "tmpdir", "str"),
        ("first_start", "first_start", "bool"),
        ("hostname", "hostname", "str"),
        ("layer_folder", "layer_folder", "str"),
        ("layer_paths", "layer_paths", ("list", "str")),
        ("isolation", "isolation", "str"),
        ("args_escaped", "args_escaped", "bool"),
        ("hv_partition", "hv_partition", "bool"),
        ("readonly_rootfs", "readonly_rootfs", "bool"),
        ("cgroup_parent", "cgroup_parent", "str"),
        ("cap_add", "cap_add", ("list", "str")),
        ("cap_drop", "cap_drop", ("list", "str")),
        ("seccomp_profile", "seccomp_profile", "str"),
        ("apparmor_profile", "apparmor_profile", "str"),
        ("no_new_privileges", "no_new_privileges", "bool"),
        ("oom_score_adj", "oom_score_adj", (-1000, 1000)),
        ("uid_mapping", "uidmapping", ("list", IDMap)),
        ("gid_mapping", "gidmapping", ("list", IDMap)),
        ("masked_paths", "masked_paths", ("list", "str")),
        ("readonly_paths", "readonly_paths", ("list", "str")),
        ("umask", "umask", ("optional", (0, 0o777))),
        ("init", "init", "bool"),
    )

    @classmethod
    def from_json(cls, text: str | bytes) -> Command:
        result: Command = super().from_json(text)
        return result


@dataclass
class ExitStatus:
    """How the container's process ended: its exit code, or 128+signal, and
    whether the kernel's OOM killer struck in its cgroup (Docker's OOMKilled)."""

    exit_code: int
    oom_killed: bool = False

    def to_json(self) -> str:
        return go_json({"ExitCode": self.exit_code, "OOMKilled": self.oom_killed})


class OOMEvents:
    """The container's OOM notifications, handed to every hook.

    It plays the part of Go's ``<-chan struct{}``: :meth:`wait` blocks until
    the kernel reports an out-of-memory kill in the container's cgroup, and
    :attr:`count` tells how many were seen. It is set by the driver.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._count = 0
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return self._count

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def notify(self) -> None:
        with self._lock:
            self._count += 1
        self._event.set()


DriverCallback = Callable[[ProcessConfig, int, OOMEvents], None]


@dataclass
class Hooks:
    """Callbacks run in the caller's process as the container passes each stage.

    ``pre_start`` callbacks run once the namespaces and rootfs exist and
    before the user process starts; ``start`` once it runs; ``post_stop``
    after it exited. Each gets ``(process_config, pid, oom)``. A hook that
    raises aborts the run: the container is removed and the error re-raised.
    """

    pre_start: list[DriverCallback] = field(default_factory=list)
    start: DriverCallback | None = None
    post_stop: list[DriverCallback] = field(default_factory=list)


@dataclass
class Pipes:
    """The container's standard streams, as binary file objects.

    An object with a working ``fileno()`` is handed to the process as it is;
    any other (``io.BytesIO``) is fed or filled by the driver. ``None`` means
    /dev/null: a container never inherits the caller's streams by accident.
    """

    stdin: IO[bytes] | None = None
    stdout: IO[bytes] | None = None
    stderr: IO[bytes] | None = None


@dataclass
class ResourceStats:
    """A sample of a container's resource use (libcontainer's Stats shape)."""

    cgroup_stats: dict[str, Any] | None = None
    interfaces: list[dict[str, Any]] | None = None
    read: datetime.datetime = field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC)
    )
    memory_limit: int = 0
    system_usage: int = 0

    def to_json(self) -> str:
        obj: dict[str, Any] = {}
        if self.cgroup_stats is not None or self.interfaces is not None:
            obj["cgroup_stats"] = self.cgroup_stats
            obj["interfaces"] = self.interfaces
        obj["read"] = rfc3339nano(self.read)
        obj["memory_limit"] = self.memory_limit
        obj["system_usage"] = self.system_usage
        return go_json(obj)
