"""Debug lines for ``--debug``, as runc writes them: nothing is made unless the CLI sets a sink.

The library calls :func:`debug` at the steps of a container's life; the
CLI (cli/main.py) sends the lines to ``--log`` in its format, or to stderr.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

sink: Callable[[str], None] | None = None


def debug(message: str) -> None:
    if sink is not None:
        sink(message)
