"""``execdriver sandbox``: run one command in a new container, in the foreground.

Without ``--rootfs`` the container sees the host's own filesystem read-only
(like bubblewrap's ``--ro-bind / /``), with its own /proc, /dev, /tmp and
/run, so it needs no image. The exit status is the command's, or 128+signal;
errors of the runtime itself exit 125, usage errors 2.
"""

from __future__ import annotations

import os
import sys

from execdriver.cli.flags import Flag, UsageError
from execdriver.linux import signals

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
    Flag("--privileged", kind="bool", help="keep every capability (default: Docker's set, less MKNOD)"),
    Flag("--tty", "-t", kind="bool", help="give CMD a terminal; ours goes raw while it runs"),
    Flag("--help", "-h", kind="bool", help="show this help"),
)
_FORWARDED = (
    signals.SIGINT, signals.SIGTERM, signals.SIGHUP, signals.SIGQUIT, signals.SIGUSR1, signals.SIGUSR2,
)


def _mounts(volumes: list[str]) -> list[tuple[str, str, bool]]:
    mounts = []
    for volume in volumes:
        parts = volume.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise UsageError(f"sandbox: -v {volume}: expected SRC:DST[:ro]")
        mounts.append((parts[0], parts[1], parts[2:] != ["ro"]))
    return mounts


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    # Straight to the launch spec: a Command would cost the import of
    # dataclasses, which takes longer than a whole container start.
    from execdriver.native import container, spec
    from execdriver.native.spawn import DirectSpawner
    from execdriver.native.state import StateStore

    if not args:
        raise UsageError("sandbox: no command given")
    rootfs = options["rootfs"]
    host_view = rootfs is None
    container_id = str(options["id"] or f"sandbox-{os.getpid()}")
    store = StateStore(str(global_options["root"]))
    launch_spec = spec.launch_spec(
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
    )

    def forward(signum: int, _frame: object) -> None:
        try:
            container.kill(store, container_id, signum)
        except Exception:  # noqa: BLE001 - the container may be starting or gone
            pass

    for signum in _FORWARDED:
        signals.signal_handle(signum, forward)
    # This process runs one thread, so it clones the container itself, and
    # the container gets our own standard streams.
    sys.stdout.flush()
    sys.stderr.flush()
    if not options["tty"]:
        code, _ = container.run(store, DirectSpawner(), launch_spec, (0, 1, 2))
        return code
    from execdriver.cli.terminal import Interactive

    with Interactive() as interactive:
        launch_spec.update(interactive.spec())
        code, _ = container.run(store, DirectSpawner(), launch_spec, interactive.console.stdio,
                                serve=interactive.console.transfer)
    return code
