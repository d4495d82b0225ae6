"""Host processes seen through /proc: identity, namespaces, signals.

A pid alone can be reused; a pid with the start time read from
/proc/<pid>/stat names one process. Signals go through a pidfd opened
before that check, so they can never reach a newer process with the
same pid.
"""

from __future__ import annotations

import os

from execdriver.linux import read_file, signals


def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name, None if gone.

    Index 0 is the state (field 3 of proc(5)), 1 the parent, 19 the start time.
    """
    try:
        data = read_file(f"/proc/{pid}/stat")
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(b")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, None if it is gone."""
    fields = _stat(pid)
    return None if fields is None else int(fields[19])


_own: tuple[int, int] = (0, 0)


def own_start_time() -> int:
    """This process's start time: it never changes, so it is read once (per pid: a fork has its own)."""
    global _own
    pid = os.getpid()
    if _own[0] != pid:
        _own = (pid, start_time(pid) or 0)
    return _own[1]


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
    fields = _stat(pid) if pid > 0 else None
    return fields is not None and int(fields[19]) == started and fields[0] not in (b"Z", b"X")


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
