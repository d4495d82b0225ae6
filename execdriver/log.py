"""Warnings and ``--debug`` lines, as runc's log has them: nothing is made unless the CLI sets a sink.

The library calls :func:`warn` and :func:`debug` at the steps of a
container's life; the CLI (cli/main.py) sends the lines to ``--log`` in its
format, or to stderr. Debug lines are made only with ``debugging`` on.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

sink: Callable[[str, str], None] | None = None  # (level, message)
debugging = False


def debug(message: str) -> None:
    if debugging and sink is not None:
        sink("debug", message)


def warn(message: str) -> None:
    if sink is not None:
        sink("warning", message)
