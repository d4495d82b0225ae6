"""The fork server: a single-threaded interpreter that clones container inits.

Started by ForkServerSpawner as ``python -I -S`` with one SOCK_SEQPACKET
control socket. Each request is one message: the launch spec as JSON, with
six descriptors (reply socket, the init's two sync pipe ends, stdin, stdout,
stderr).
It answers on the reply socket with ``P<pid>`` (or ``E<error>``) at once,
and ``X<wait status>`` when that init exits; the server is the init's parent
and so the one that reaps it.

When the control socket closes (the API process exited, or was killed) the
server kills every init it started, reaps them, removes their state
directories and exits: nothing outlives the program that ran it. If the
server itself is killed, each init dies with it (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import json
import os
import select
import socket

from execdriver.linux import syscalls
from execdriver.native import init as _init  # noqa: F401 - loaded once, not per child
from execdriver.native.spawn import clone_init

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _Child:
    def __init__(self, pid: int, pidfd: int, reply: socket.socket, state_dir: str) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.reply = reply
        self.state_dir = state_dir


def _handle(control: socket.socket, children: dict[int, _Child], poller: select.poll) -> bool:
    message, fds, _, _ = socket.recv_fds(control, 1 << 20, 6)
    if not message:
        return False
    reply = socket.socket(fileno=fds[0])
    try:
        spec: dict[str, Any] = json.loads(message)
        inherited = (control.fileno(), reply.fileno(),
                     *(c.pidfd for c in children.values()), *(c.reply.fileno() for c in children.values()))
        pid, pidfd = clone_init(spec, (fds[1], fds[2]), (fds[3], fds[4], fds[5]), inherited)
    except Exception as err:  # noqa: BLE001 - reported to the caller
        reply.send(b"E" + str(err).encode())
        reply.close()
        return True
    finally:
        for fd in fds[1:]:
            os.close(fd)
    children[pidfd] = _Child(pid, pidfd, reply, spec.get("state_dir", ""))
    poller.register(pidfd, select.POLLIN)
    socket.send_fds(reply, [b"P%d" % pid], [pidfd])
    return True


def _reap(child: _Child) -> None:
    _, status = os.waitpid(child.pid, 0)
    os.close(child.pidfd)
    try:
        child.reply.send(b"X%d" % status)
    except OSError:
        pass
    child.reply.close()


def _shutdown(children: dict[int, _Child]) -> None:
    from execdriver.native.state import remove_tree

    for child in children.values():
        syscalls.pidfd_send_signal(child.pidfd, syscalls.SIGKILL)
    for child in children.values():
        _reap(child)
        if child.state_dir:
            remove_tree(child.state_dir)


def main(control_fd: int) -> None:
    syscalls.signal_ignore(syscalls.SIGINT)
    control = socket.socket(fileno=control_fd)
    poller = select.poll()
    poller.register(control, select.POLLIN)
    children: dict[int, _Child] = {}
    while True:
        for fd, _ in poller.poll():
            if fd == control_fd:
                if not _handle(control, children, poller):
                    _shutdown(children)
                    return
            else:
                poller.unregister(fd)
                _reap(children.pop(fd))
