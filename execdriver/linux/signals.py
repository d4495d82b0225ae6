"""Signals, through the signal module's C core.

The signal module itself imports enum, which costs milliseconds on the CLI's
start path; its C core (_signal) has the same functions on plain ints.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

SIGHUP: int = _signal.SIGHUP
SIGINT: int = _signal.SIGINT
SIGQUIT: int = _signal.SIGQUIT
SIGKILL: int = _signal.SIGKILL
SIGUSR1: int = _signal.SIGUSR1
SIGUSR2: int = _signal.SIGUSR2
SIGPIPE: int = _signal.SIGPIPE
SIGTERM: int = _signal.SIGTERM
SIGXFSZ: int = _signal.SIGXFSZ
SIGWINCH: int = _signal.SIGWINCH
SIGALRM: int = _signal.SIGALRM

# What the foreground commands (sandbox, run, exec) pass on to their process.
FORWARDED_SIGNALS = (SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGTERM)


def signal_default(signum: int) -> None:
    _signal.signal(signum, _signal.SIG_DFL)


def signal_ignore(signum: int) -> None:
    _signal.signal(signum, _signal.SIG_IGN)


def signal_handle(signum: int, handler: Callable[[int, object], None]) -> None:
    _signal.signal(signum, handler)


def alarm_after(seconds: float) -> None:
    """SIGALRM in ``seconds`` (setitimer: fractions too)."""
    _signal.setitimer(_signal.ITIMER_REAL, seconds)


def unblock_all_signals() -> None:
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())


def pidfd_send_signal(pidfd: int, signum: int) -> None:
    _signal.pidfd_send_signal(pidfd, signum)
