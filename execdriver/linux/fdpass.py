"""Unix sockets that carry descriptors (SCM_RIGHTS), on the _socket core.

The socket module costs 10 ms to import (enum, selectors, collections),
more than a container start, and socket.send_fds's array module 3 ms
(collections.abc): the fork server, the init and the CLI's terminal code
pass descriptors through these few functions instead.
Received descriptors are close-on-exec (MSG_CMSG_CLOEXEC; socket.recv_fds
leaves them inheritable, so a pidfd or a terminal's master would reach
every program the receiver runs next).
"""

from __future__ import annotations

import os
import sys
from _socket import (
    AF_UNIX,
    CMSG_LEN,
    MSG_CMSG_CLOEXEC,
    MSG_DONTWAIT,
    MSG_PEEK,
    MSG_TRUNC,
    SCM_RIGHTS,
    SOCK_SEQPACKET,
    SOCK_STREAM,
    SOL_SOCKET,
    socket,
    socketpair,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["MSG_DONTWAIT", "SOCK_SEQPACKET", "SOCK_STREAM", "Socket", "borrow", "connect", "pair", "recv_fds",
           "send_fds", "wrap"]

Socket = socket


def pair(kind: int = SOCK_SEQPACKET) -> tuple[Socket, Socket]:
    """A connected pair of Unix sockets, close-on-exec (SOCK_SEQPACKET keeps message boundaries)."""
    return socketpair(AF_UNIX, kind)


def wrap(fd: int) -> Socket:
    """The socket object of a descriptor; closing it closes the descriptor."""
    return socket(fileno=fd)


class borrow:  # (named as a function: with borrow(fd) as channel)
    """A socket object over a copy of ``fd`` for a with block; ``fd`` itself stays open.

    (_socket's socket is no context manager: socket.socket adds that.)
    """

    def __init__(self, fd: int) -> None:
        self.channel = socket(fileno=os.dup(fd))

    def __enter__(self) -> Socket:
        return self.channel

    def __exit__(self, *exc_info: object) -> None:
        self.channel.close()


def connect(path: str) -> Socket:
    """A stream socket connected to the Unix socket at ``path``."""
    channel = socket(AF_UNIX, SOCK_STREAM)
    try:
        channel.connect(path)
    except OSError:
        channel.close()
        raise
    return channel


_INT = 4  # a descriptor in SCM_RIGHTS data: a C int


def send_fds(sock: Socket, message: bytes, fds: Sequence[int]) -> None:
    """One message, with ``fds`` attached (none: a plain message)."""
    data = b"".join(fd.to_bytes(_INT, sys.byteorder, signed=True) for fd in fds)
    sock.sendmsg([message], [(SOL_SOCKET, SCM_RIGHTS, data)] if fds else [])


def next_size(sock: Socket) -> int:
    """The size of the next message of a SOCK_SEQPACKET socket, once there is one (it stays queued):
    a buffer of that size, not of the largest a message may be, which Python would allocate whole."""
    return sock.recv_into(bytearray(1), 1, MSG_PEEK | MSG_TRUNC)


def recv_fds(sock: Socket, size: int, maxfds: int, flags: int = 0) -> tuple[bytes, list[int]]:
    """One message and the descriptors that came with it, close-on-exec."""
    message, ancillary, _, _ = sock.recvmsg(size, CMSG_LEN(maxfds * _INT), flags | MSG_CMSG_CLOEXEC)
    fds = []
    for level, kind, data in ancillary:
        if level == SOL_SOCKET and kind == SCM_RIGHTS:
            fds += [int.from_bytes(data[at: at + _INT], sys.byteorder, signed=True)
                    for at in range(0, len(data) - len(data) % _INT, _INT)]
    return message, fds
