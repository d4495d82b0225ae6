"""The CLI's interactive terminal: ``sandbox -t`` and ``exec -t`` without a console socket.

The container's pty is served through a TtyConsole on our own stdin and
stdout; our terminal, if stdin is one, goes into raw mode so that every key
(^C included) reaches the container, and comes back as it was on the way
out, errors included. Window changes follow as SIGWINCH.
"""

from __future__ import annotations

import gc
import os
import sys

from execdriver.linux import signals

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any

    from execdriver.console import TtyConsole
    from execdriver.native.spec import Process


class Interactive:
    """A TtyConsole on our standard streams, with the host terminal raw while it runs."""

    def __init__(self) -> None:
        from types import SimpleNamespace
        from typing import cast

        from execdriver.console import TtyConsole

        self._saved: list[Any] | None = None
        sys.stdout.flush()
        streams = SimpleNamespace(stdin=sys.stdin.buffer, stdout=sys.stdout.buffer, stderr=None)
        self.console: TtyConsole = TtyConsole(cast("Any", None), cast("Any", streams))

    @staticmethod
    def size() -> tuple[int, int]:
        """Our terminal's (height, width), or (0, 0) without one."""
        for fd in (0, 1):
            try:
                columns, lines = os.get_terminal_size(fd)
                return lines, columns
            except OSError:
                continue
        return 0, 0

    def attach(self, process: Process) -> None:
        """Ask ``process`` for a terminal, whose master comes back to our console over its stdin."""
        process.terminal, process.console_socket, process.console_size = True, 0, self.size()

    def __enter__(self) -> Interactive:
        gc.enable()  # an interactive session may run for days (bin/execdriver turned the collector off)
        if os.isatty(0):
            import termios
            import tty

            self._saved = termios.tcgetattr(0)
            tty.setraw(0)
        signals.signal_handle(signals.SIGWINCH, lambda _signum, _frame: self.console.resize(*self.size()))
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        signals.signal_default(signals.SIGWINCH)
        if self._saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, self._saved)
        self.console.close()
