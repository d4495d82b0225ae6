"""``execdriver sandbox``: run one command in a new container, in the foreground.

Without ``--rootfs`` the container sees the host's own filesystem read-only
(like bubblewrap's ``--ro-bind / /``), with its own /proc, /dev, /tmp and
/run, so it needs no image. It is limited as ``execdriver.sandbox.run``
is by default (memory, CPU, pids, /tmp's size; 0 lifts a limit), and
``--timeout`` kills it. The exit status is the command's, or 128+signal;
124 when it timed out, as timeout(1)'s; errors of the runtime itself exit
125, usage errors 2.
"""

from __future__ import annotations

import os
import sys

from execdriver.cli.flags import Flag, UsageError
from execdriver.linux import signals

TYPE_CHECKING = False
if TYPE_CHECKING:
    from execdriver.linux.network import Network
    from execdriver.native.spec import Security
    from execdriver.sandbox.options import Limits

SYNOPSIS = "execdriver sandbox [flags] [--] CMD [ARG...]"
ERROR_EXIT = 125  # the runtime's own errors, as docker run reports them
DESCRIPTION = "Run CMD in a new container, in the foreground, and exit with its status."
FLAGS = (
    Flag("--rootfs", metavar="DIR", help="root filesystem (default: the host's, read-only)"),
    Flag("--read-only", kind="bool", help="mount the rootfs read-only"),
    Flag("--hostname", default="sandbox", metavar="NAME", help="the container's hostname (default sandbox)"),
    Flag("--id", metavar="ID", help="container id (default sandbox-<pid>)"),
    Flag("--volume", "-v", kind="append", metavar="SRC:DST[:ro]", help="bind-mount a host path, writable unless :ro"),
    Flag("--workdir", "-w", default="", metavar="DIR", help="working directory in the container"),
    Flag("--env", "-e", kind="append", metavar="KEY=VALUE", help="set an environment variable"),
    Flag("--user", "-u", default="", metavar="USER[:GROUP]", help="run as this user of the rootfs"),
    Flag("--privileged", kind="bool", help="keep every capability (default: Docker's set)"),
    Flag("--tty", "-t", kind="bool", help="give CMD a terminal; ours goes raw while it runs"),
    Flag("--cap-add", kind="append", metavar="CAP", help="add a capability to Docker's default set (or ALL)"),
    Flag("--cap-drop", kind="append", metavar="CAP", help="drop a capability from it (or ALL)"),
    Flag("--security-opt", kind="append", metavar="OPT",
         help="seccomp=unconfined|PROFILE.json (default: Docker's profile), no-new-privileges, apparmor=PROFILE"),
    Flag("--init", kind="bool", help="run CMD under a reaper as pid 1 (tini), which reaps orphaned zombies"),
    Flag("--ulimit", kind="append", metavar="NAME=SOFT[:HARD]", help="a resource limit, e.g. nofile=1024:2048"),
    Flag("--network", default="none", metavar="MODE",
         help="none (loopback alone), host, bridge[:NAME] (default bridge execdriver0) or container:ID"),
    Flag("--publish", "-p", kind="append", metavar="[IP:][HOSTPORT:]PORT[/udp]",
         help="publish a container port on the host (bridge only); no HOSTPORT: a free one"),
    Flag("--ip", default="", metavar="ADDR", help="the container's address on the bridge"),
    Flag("--mac-address", default="", metavar="MAC", help="the container's MAC address on the bridge"),
    Flag("--mtu", default="0", metavar="N", help="the MTU of the container's interface (default: the bridge's)"),
    Flag("--subnet-pool", default="", metavar="NET/LEN:PREFIX",
         help="where new bridges' subnets come from (default 10.98.0.0/16:24)"),
    Flag("--memory", "-m", default="", metavar="SIZE",
         help="memory limit, swap included, e.g. 512m (default 256m; 0: none)"),
    Flag("--cpus", default="", metavar="N", help="CPU time, in CPUs, e.g. 0.5 (default 1; 0: none)"),
    Flag("--pids-limit", default="", metavar="N", help="processes and threads at once (default 64; 0: none)"),
    Flag("--tmp-size", default="64m", metavar="SIZE", help="size of the host view's /tmp (default 64m; 0: none)"),
    Flag("--timeout", default="0", metavar="SECONDS",
         help="kill it (all of it) after this long and exit 124, as timeout(1) (default 0: never)"),
    Flag("--help", "-h", kind="bool", help="show this help"),
)


def _mounts(volumes: list[str]) -> list[tuple[str, str, bool]]:
    mounts = []
    for volume in volumes:
        parts = volume.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise UsageError(f"sandbox: -v {volume}: expected SRC:DST[:ro]")
        mounts.append((parts[0], parts[1], parts[2:] != ["ro"]))
    return mounts


def _published(specs: list[str]) -> dict[str, list[dict[str, str]] | None]:
    """Docker's -p forms as a nat.PortMap."""
    port_map: dict[str, list[dict[str, str]] | None] = {}
    for text in specs:
        address, protocol = text.partition("/")[0::2]
        parts = address.split(":")
        if len(parts) > 3 or not parts[-1]:
            raise UsageError(f"sandbox: -p {text}: expected [IP:][HOSTPORT:]PORT[/tcp|/udp]")
        host_ip, host_port = (parts[0], parts[1]) if len(parts) == 3 else ("", parts[0] if len(parts) == 2 else "")
        bindings = port_map.setdefault(f"{parts[-1]}/{protocol or 'tcp'}", [])
        assert bindings is not None
        bindings.append({"HostIp": host_ip, "HostPort": host_port})
    return port_map


def _network(options: dict[str, object]) -> Network | None:
    from execdriver.linux.network import config

    mode, _, name = str(options["network"]).partition(":")
    publish: list[str] = options["publish"]  # type: ignore[assignment]
    if publish and mode != "bridge":
        raise UsageError("sandbox: -p publishes ports of a bridged container: add --network bridge")
    named = {"none": False, "host": False, "container": True}  # bridge: either
    if mode not in ("bridge", *named) or (mode != "bridge" and bool(name) != named[mode]):
        raise UsageError(f"sandbox: --network {options['network']}: expected none, host, bridge[:NAME] or container:ID")
    if not str(options["mtu"]).isdigit():
        raise UsageError(f"sandbox: --mtu {options['mtu']}: not a number")
    return config.parse(host=mode == "host", container_id=name if mode == "container" else "",
                        bridge=name if mode == "bridge" else None, ip=str(options["ip"]),
                        mac=str(options["mac_address"]), mtu=int(str(options["mtu"])),
                        port_map=_published(publish) if publish else None)


def _security(options: dict[str, object], state_dir: str) -> Security:
    """Docker's --privileged, --cap-add, --cap-drop, --security-opt and --ulimit, on Docker's defaults."""
    from execdriver.linux import RLIMITS
    from execdriver.native.command import process_security

    profile, no_new_privileges, apparmor = "", False, ""
    for option in options["security_opt"]:  # type: ignore[attr-defined]
        key, _, value = str(option).replace(":", "=", 1).partition("=")
        if key == "seccomp":
            if value == "unconfined":
                profile = "unconfined"
            else:
                try:
                    with open(value, encoding="utf-8") as handle:
                        profile = handle.read()
                except OSError as err:
                    raise UsageError(f"sandbox: --security-opt seccomp={value}: {err.strerror}") from None
        elif key == "no-new-privileges" and value in ("", "true"):
            no_new_privileges = True
        elif key == "apparmor" and value:
            apparmor = value
        else:
            raise UsageError(f"sandbox: --security-opt {option}: expected seccomp=..., no-new-privileges "
                             "or apparmor=...")
    rlimits = []
    for text in options["ulimit"]:  # type: ignore[attr-defined]
        name, _, limits = str(text).partition("=")
        soft, _, hard = limits.partition(":")
        if name not in RLIMITS or not soft.lstrip("-").isdigit() or (hard and not hard.lstrip("-").isdigit()):
            raise UsageError(f"sandbox: --ulimit {text}: expected NAME=SOFT[:HARD], NAME one of {', '.join(RLIMITS)}")
        rlimits.append((RLIMITS[name], int(soft) & (2**64 - 1), int(hard or soft) & (2**64 - 1)))
    return process_security(bool(options["privileged"]), state_dir, cap_add=options["cap_add"],  # type: ignore[arg-type]
                            cap_drop=options["cap_drop"], seccomp_profile=profile,  # type: ignore[arg-type]
                            no_new_privileges=no_new_privileges, rlimits=rlimits, apparmor_profile=apparmor)


TIMED_OUT_EXIT = 124  # timeout(1)'s


def _limits(options: dict[str, object]) -> tuple[Limits, float]:
    """--memory, --cpus, --pids-limit, --tmp-size (0: none) and --timeout, checked.

    The defaults are the library's. A user without privileges whom this
    host gives no cgroup runs without the default memory, CPU and pids
    limits, told so; one asked for explicitly is then an error.
    """
    from execdriver.cli.flags import ram_in_bytes
    from execdriver.errors import ConfigError
    from execdriver.sandbox import options as defaults
    from execdriver.sandbox.options import Limits

    values: dict[str, int | float | None] = {}
    explicit = False
    for flag, name, parse in (("memory", "memory", ram_in_bytes), ("cpus", "cpus", float),
                              ("pids_limit", "pids", int), ("tmp_size", "tmp_size", ram_in_bytes)):
        text = str(options[flag])
        if not text:
            continue
        explicit = explicit or flag != "tmp_size"
        try:
            value = parse(text)
        except ValueError:
            raise UsageError(f"sandbox: --{flag.replace('_', '-')} {text}: not a valid value") from None
        values[name] = value or None
    try:
        timeout = float(str(options["timeout"]))
        if not timeout >= 0 or timeout == float("inf"):
            raise ValueError
    except ValueError:
        raise UsageError(f"sandbox: --timeout {options['timeout']}: not a number of seconds") from None
    try:
        limits = Limits(**values)  # type: ignore[arg-type]
    except ConfigError as err:
        raise UsageError(f"sandbox: --{str(err).replace('_', '-').replace('pids:', 'pids-limit:')}") from None
    if not explicit and not defaults.cgroup_available():
        sys.stderr.write(f"execdriver: warning: {defaults.NO_CGROUP}\n")
        limits = limits.without_cgroup()
    return limits, timeout


def _pool(text: str) -> tuple[str, int] | None:
    network, _, prefix = text.partition(":")
    if not text:
        return None
    if not prefix.isdigit():
        raise UsageError(f"sandbox: --subnet-pool {text}: expected NET/LEN:PREFIX, like 10.98.0.0/16:24")
    return network, int(prefix)


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    # Straight to the launch spec: a Command would cost the import of
    # dataclasses, which takes longer than a whole container start.
    from execdriver.native import command, container
    from execdriver.native.spawn import DirectSpawner
    from execdriver.native.state import StateStore

    if not args:
        raise UsageError("sandbox: no command given")
    limits, timeout = _limits(options)
    rootfs = options["rootfs"]
    host_view = rootfs is None
    container_id = str(options["id"] or f"sandbox-{os.getpid()}")
    store = StateStore(str(global_options["root"]))
    network = None
    if options["network"] != "none" or options["publish"]:
        network = command.complete_network(_network(options), store, _pool(str(options["subnet_pool"])))
    spec = command.launch_spec(
        container_id=container_id,
        state_dir=store.path(container_id),
        argv=args,
        rootfs="/" if host_view else str(rootfs),
        readonly=host_view or bool(options["read_only"]),
        mounts=_mounts(options["volume"]),  # type: ignore[arg-type]
        hostname=str(options["hostname"]),
        working_dir=str(options["workdir"]),
        env=options["env"],  # type: ignore[arg-type]
        user=str(options["user"]),
        privileged=bool(options["privileged"]),
        network=network,
        security=_security(options, store.path(container_id)),
        init=bool(options["init"]),
        limits=limits.cgroup(command.default_device_rules(bool(options["privileged"]))),
        tmp_size=limits.tmp_size if host_view else None,
    )

    def forward(signum: int, _frame: object) -> None:
        try:
            container.kill(store, container_id, signum)
        except Exception:  # noqa: BLE001 - the container may be starting or gone
            pass

    for signum in signals.FORWARDED_SIGNALS:
        signals.signal_handle(signum, forward)
    timed_out: list[bool] = []
    if timeout:
        def expire(_signum: int, _frame: object) -> None:
            timed_out.append(True)
            forward(signals.SIGKILL, None)  # pid 1 of its namespace: all of it goes

        signals.signal_handle(signals.SIGALRM, expire)
        signals.alarm_after(timeout)
    if network is not None and network.mode == "bridge":
        container.guard(store, container_id)
    # This process runs one thread, so it clones the container itself, and
    # the container gets our own standard streams.
    sys.stdout.flush()
    sys.stderr.flush()
    if not options["tty"]:
        code, _ = container.run(store, DirectSpawner(), spec, (0, 1, 2))
    else:
        from execdriver.console import Interactive

        with Interactive() as interactive:
            interactive.attach(spec.process)
            code, _ = container.run(store, DirectSpawner(), spec, interactive.console.stdio,
                                    serve=interactive.console.transfer)
    return TIMED_OUT_EXIT if timed_out else code
