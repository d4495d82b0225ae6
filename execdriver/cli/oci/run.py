"""``run``: create and start a container; in the foreground, wait for it and delete it."""

from __future__ import annotations

from execdriver.cli.flags import Flag
from execdriver.cli.oci import create, delete, start
from execdriver.cli.oci.common import one_id, store

SYNOPSIS = "execdriver run [flags] ID"
DESCRIPTION = "Create and start a container; without --detach, wait for it, delete it, exit with its status."
FLAGS = (
    *(flag for flag in create.FLAGS if flag.dest != "help"),
    Flag("--detach", "-d", kind="bool", help="return once the container runs"),
    Flag("--keep", kind="bool", help="do not delete the container when it exits"),
    Flag("--help", "-h", kind="bool", help="show this help"),
)


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    import os

    from execdriver.linux import signals
    from execdriver.native import container
    from execdriver.native.container import exit_code

    container_id = one_id(args, "run")
    pid = create.create(global_options, options, container_id)
    try:
        start.start(global_options, container_id)
    except BaseException:
        delete.delete(global_options, container_id, force=True)
        raise
    if options["detach"]:
        return 0
    states = store(global_options)

    def forward(signum: int, _frame: object) -> None:
        try:
            container.kill(states, container_id, signum)
        except Exception:  # noqa: BLE001 - it may be gone
            pass

    for signum in signals.FORWARDED_SIGNALS:
        signals.signal_handle(signum, forward)
    # This process created the init, so it is its parent and reaps it.
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    if not options["keep"]:
        delete.delete(global_options, container_id, force=True)
    return exit_code(status)
