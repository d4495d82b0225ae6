"""A container's terminal: a pty made inside it, the master handed to the engine.

As runc does with --console-socket: the pty comes from the container's
own devpts (so the slave's name is the container's /dev/pts/N), the master
goes over the engine's unix socket with SCM_RIGHTS, and the slave becomes
the process's controlling terminal and stdio.
"""

from __future__ import annotations

import fcntl
import os
import struct

# here, not in attach(): that runs after the pivot, where the package is out of sight
from execdriver.linux import fdpass

_TIOCSCTTY = 0x540E
_TIOCSWINSZ = 0x5414


def set_size(fd: int, height: int, width: int) -> None:
    fcntl.ioctl(fd, _TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def attach(console_socket: int, size: tuple[int, int] | None) -> None:
    """Open a pty here, send its master to ``console_socket``, make the slave our terminal and stdio.

    The caller must lead its session (setsid) for the slave to become its
    controlling terminal.
    """
    master, slave = os.openpty()
    try:
        if size and size[0] and size[1]:
            set_size(slave, *size)
        with fdpass.borrow(console_socket) as channel:
            fdpass.send_fds(channel, os.ttyname(slave).encode(), [master])
    finally:
        os.close(master)
        os.close(console_socket)
    fcntl.ioctl(slave, _TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)


def connect(path: str) -> int:
    """The engine's console socket, connected: a descriptor the init inherits."""
    return fdpass.connect(path).detach()
