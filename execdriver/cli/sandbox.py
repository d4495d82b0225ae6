"""``execdriver sandbox``: run one command in a new container, in the foreground.

Without ``--rootfs`` the container sees the host's own filesystem read-only
(like bubblewrap's ``--ro-bind / /``), with its own /proc, /dev, /tmp and
/run, so it needs no image. The exit status is the command's, or 128+signal;
errors of the runtime itself exit 125.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def add_parser(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "sandbox", help="run a command in a new container, in the foreground",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--rootfs", help="root filesystem directory (default: the host's, read-only)")
    parser.add_argument("--read-only", action="store_true", help="mount the rootfs read-only")
    parser.add_argument("--hostname", default="", help="the container's hostname (default: sandbox)")
    parser.add_argument("--id", help="container id (default: sandbox-<pid>)")
    parser.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]",
                        help="bind-mount a host path (writable unless :ro)")
    parser.add_argument("-w", "--workdir", default="", metavar="DIR", help="working directory in the container")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="K=V", help="set an environment variable")
    parser.add_argument("-u", "--user", default="", metavar="USER[:GROUP]", help="run as this user")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD [ARG...]")
    parser.set_defaults(handler=run)


def _mounts(volumes: list[str]) -> list[Any]:
    from execdriver.api import Mount
    from execdriver.errors import ConfigError

    mounts = []
    for volume in volumes:
        parts = volume.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise ConfigError(f"-v {volume}: expected SRC:DST[:ro]")
        mounts.append(Mount(source=parts[0], destination=parts[1], writable=parts[2:] != ["ro"]))
    return mounts


def run(args: argparse.Namespace) -> int:
    from execdriver.api import Command, Pipes, ProcessConfig
    from execdriver.errors import ConfigError
    from execdriver.native.driver import NativeDriver

    command_line = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command_line:
        raise ConfigError("sandbox: no command given")
    host_view = args.rootfs is None
    command = Command(
        id=args.id or f"sandbox-{os.getpid()}",
        rootfs="/" if host_view else args.rootfs,
        readonly_rootfs=host_view or args.read_only,
        hostname=args.hostname or "sandbox",
        mounts=_mounts(args.volume),
        working_dir=args.workdir,
        process_config=ProcessConfig(
            entrypoint=command_line[0],
            arguments=command_line[1:],
            env=args.env,
            user=args.user,
        ),
    )
    # The CLI runs one thread, so it clones the container itself.
    driver = NativeDriver(root=args.root, fork_server=False)

    def forward(signum: int, _frame: object) -> None:
        try:
            driver.kill(command, signum)
        except Exception:  # noqa: BLE001 - the container may be starting or gone
            pass

    for signum in _FORWARDED:
        signal.signal(signum, forward)
    stdin = sys.stdin.buffer if sys.stdin is not None else None
    status = driver.run(command, Pipes(stdin=stdin, stdout=sys.stdout.buffer, stderr=sys.stderr.buffer))
    return status.exit_code
