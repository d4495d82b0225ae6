"""Host processes seen through /proc: identity, namespaces, signals.

A pid alone can be reused; a pid with the start time read from
/proc/<pid>/stat names one process. Signals go through a pidfd opened
before that check, so they can never reach a newer process with the
same pid.
"""

from __future__ import annotations

import os

from execdriver.linux import signals


def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name, None if gone.

    Index 0 is the state (field 3 of proc(5)), 1 the parent, 19 the start time.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(b")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, None if it is gone."""
    fields = _stat(pid)
    return None if fields is None else int(fields[19])


def parent(pid: int) -> int | None:
    """The parent's pid, None if the process is gone."""
    fields = _stat(pid)
    return None if fields is None else int(fields[1])


def is_zombie(pid: int) -> bool:
    """Gone, or dead and not yet reaped."""
    fields = _stat(pid)
    return fields is None or fields[0] in (b"Z", b"X")


def is_alive(pid: int, started: int) -> bool:
    """Whether the process ``pid`` that started at ``started`` still runs."""
    return pid > 0 and start_time(pid) == started and not is_zombie(pid)


def send_signal(pid: int, started: int, signum: int) -> bool:
    """Signal the process if it is still the one that started at ``started``.

    Returns False when that process is gone.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if start_time(pid) != started:
            return False
        signals.pidfd_send_signal(pidfd, signum)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)
