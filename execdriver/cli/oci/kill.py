"""``kill``: send a signal to a container's init (or, with --all, to all its processes)."""

from __future__ import annotations

from execdriver.cli.flags import Flag, UsageError
from execdriver.cli.oci.common import runtime

SYNOPSIS = "execdriver kill [--all] ID [SIGNAL]"
DESCRIPTION = "Send SIGNAL (a number or a name; default SIGTERM) to the container."
FLAGS = (
    Flag("--all", "-a", kind="bool", help="signal every process of the container"),
    Flag("--help", "-h", kind="bool", help="show this help"),
)


def signal_number(text: str) -> int:
    """``9``, ``KILL``, ``SIGKILL`` or ``sigkill`` -> 9."""
    if text.isascii() and text.isdigit():  # ("²".isdigit(), which int() refuses)
        number = int(text)
        if 0 <= number < 65:  # 0: is it there (runc's too)
            return number
    else:
        import signal

        name = text.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        value = getattr(signal, name, None)
        if isinstance(value, signal.Signals):
            return int(value)
    raise UsageError(f"kill: {text!r} is not a signal")


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    if len(args) not in (1, 2):
        raise UsageError("kill: expects ID [SIGNAL]")
    signum = signal_number(args[1]) if len(args) == 2 else 15
    runtime(global_options).kill(args[0], signum, all_processes=bool(options["all"]))
    return 0
