"""Standard streams of a container process (the reference's StdConsole).

Like subprocess: a stream with a real file descriptor is handed to the
process as it is; any other file object (io.BytesIO, a custom writer) is
connected through a pipe that :meth:`StdConsole.transfer` serves, feeding
stdin and draining stdout and stderr together so that large outputs on
both never deadlock.
"""

from __future__ import annotations

import io
import os
import select
import sys
from dataclasses import dataclass, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import TracebackType
    from typing import IO, Any

    from execdriver.api import Pipes, ProcessConfig
    from execdriver.native.spec import Process

_CHUNK = 1 << 16


def _fileno(stream: IO[bytes]) -> int | None:
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
        return None
    flush = getattr(stream, "flush", None)
    if flush is not None:
        try:
            flush()
        except (OSError, ValueError):
            pass
    return fd


@dataclass
class StdConsole:
    """Connects Pipes to a container process, without a terminal.

    ``stdio`` holds the process's three descriptors; ``closers`` ours,
    released by :meth:`close`.
    """

    process_config: ProcessConfig
    pipes: Pipes
    closers: list[int] = field(default_factory=list)
    stdio: tuple[int, int, int] = field(init=False)
    _feeds: dict[int, IO[bytes]] = field(default_factory=dict, init=False, repr=False)  # write end -> source
    _drains: dict[int, IO[bytes]] = field(default_factory=dict, init=False, repr=False)  # read end -> sink
    _child: list[int] = field(default_factory=list, init=False, repr=False)  # the process's ends

    def __post_init__(self) -> None:
        self.stdio = self.attach_pipes(self.pipes)

    def attach_pipes(self, pipes: Pipes) -> tuple[int, int, int]:
        """Descriptors for the process's stdin, stdout and stderr."""
        result = []
        devnull = -1
        for index, stream in enumerate((pipes.stdin, pipes.stdout, pipes.stderr)):
            if stream is None:
                if devnull < 0:
                    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                    self._child.append(devnull)
                fd = devnull
            elif (direct := _fileno(stream)) is not None:
                fd = direct
            else:
                read_end, write_end = os.pipe2(os.O_CLOEXEC)
                if index == 0:
                    fd = read_end
                    self._child.append(read_end)
                    self._feeds[write_end] = stream
                    self.closers.append(write_end)
                    os.set_blocking(write_end, False)
                else:
                    fd = write_end
                    self._child.append(write_end)
                    self._drains[read_end] = stream
                    self.closers.append(read_end)
            result.append(fd)
        return result[0], result[1], result[2]

    def release_child_ends(self) -> None:
        """Close our copies of the process's ends, once it has its own."""
        for fd in self._child:
            os.close(fd)
        self._child.clear()

    def transfer(self, exit_fd: int, watches: Sequence[tuple[int, int, Callable[[], None]]] = ()) -> None:
        """Serve the pipes until ``exit_fd`` is readable and output is drained.

        Each watch is (descriptor, poll events, callback): the callback runs
        when the descriptor fires (the container's OOM events).
        """
        self.release_child_ends()
        poller = select.poll()
        poller.register(exit_fd, select.POLLIN)
        for fd in self._feeds:
            poller.register(fd, select.POLLOUT)
        for fd in self._drains:
            poller.register(fd, select.POLLIN)
        callbacks = {}
        for fd, events, callback in watches:
            poller.register(fd, events)
            callbacks[fd] = callback
        pending = b""
        exited = False
        while not exited or self._drains:
            for fd, _ in poller.poll():
                if fd == exit_fd:
                    exited = True
                    poller.unregister(fd)
                elif fd in callbacks:
                    callbacks[fd]()
                elif fd in self._drains:
                    data = os.read(fd, _CHUNK)
                    if data:
                        self._drains[fd].write(data)
                    else:  # end of file (or POLLHUP): the writers are gone
                        poller.unregister(fd)
                        del self._drains[fd]
                elif fd in self._feeds:
                    if not pending:
                        pending = self._feeds[fd].read(_CHUNK) or b""
                    done = not pending  # the source is at its end
                    if pending:
                        try:
                            pending = pending[os.write(fd, pending) :]
                        except BrokenPipeError:  # the process closed its stdin
                            pending, done = b"", True
                    if done:
                        poller.unregister(fd)
                        self._close_feed(fd)

    def _close_feed(self, fd: int) -> None:
        del self._feeds[fd]
        self.closers.remove(fd)
        os.close(fd)

    def resize(self, height: int, width: int) -> None:
        """A console without a terminal has no size: nothing to do."""

    def close(self) -> None:
        self.release_child_ends()
        for fd in self.closers:
            try:
                os.close(fd)
            except OSError:
                pass
        self.closers.clear()
        self._feeds.clear()
        self._drains.clear()


@dataclass
class TtyConsole:
    """Connects Pipes to a container process through a pty made in the container.

    The process gets one end of a socket pair as stdin, stdout and stderr;
    its init (or exec'd child) opens a pty in the container's devpts and
    sends the master back on it (linux/terminal.py). Output, stdout and
    stderr alike, goes to ``pipes.stdout``; ``pipes.stdin`` is typed in,
    then end-of-file (^D).
    """

    process_config: ProcessConfig
    pipes: Pipes
    stdio: tuple[int, int, int] = field(init=False)
    master: int = field(default=-1, init=False)
    _ours: int = field(default=-1, init=False, repr=False)
    _theirs: int = field(default=-1, init=False, repr=False)
    _size: tuple[int, int] | None = field(default=None, init=False, repr=False)
    _flush: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        from execdriver.linux import fdpass

        # A sink with a descriptor (the CLI's stdout) sees output at once.
        self._flush = self.pipes.stdout is not None and _fileno(self.pipes.stdout) is not None

        ours, theirs = fdpass.pair(fdpass.SOCK_STREAM)
        self._ours, self._theirs = ours.detach(), theirs.detach()
        self.stdio = (self._theirs, self._theirs, self._theirs)

    def release_child_ends(self) -> None:
        if self._theirs >= 0:
            os.close(self._theirs)
            self._theirs = -1

    def _receive(self) -> None:
        from execdriver.linux import fdpass

        if self.master >= 0:
            return
        with fdpass.borrow(self._ours) as channel:
            channel.settimeout(10)
            _, fds = fdpass.recv_fds(channel, 1024, 1)
        if not fds:
            raise OSError("the container sent no terminal")
        self.master = fds[0]
        if self._size is not None:
            self.resize(*self._size)

    def transfer(self, exit_fd: int, watches: Sequence[tuple[int, int, Callable[[], None]]] = ()) -> None:
        """Serve the terminal until ``exit_fd`` is readable and its output is drained."""
        self.release_child_ends()
        self._receive()
        source = self.pipes.stdin
        source_fd = _fileno(source) if source is not None else None  # a terminal: read what is typed as it comes
        pending = b""
        poller = select.poll()
        poller.register(exit_fd, select.POLLIN)
        feeding = source is not None and source_fd is None
        poller.register(self.master, select.POLLIN | (select.POLLOUT if feeding else 0))
        if source_fd is not None:
            poller.register(source_fd, select.POLLIN)
        callbacks = {}
        for fd, events, callback in watches:
            poller.register(fd, events)
            callbacks[fd] = callback
        open_master = True
        while open_master:
            for fd, events in poller.poll():
                if fd == exit_fd:
                    poller.unregister(fd)
                    os.set_blocking(self.master, False)  # drain what is left, then stop
                    open_master = self._drain(block=False)
                elif fd in callbacks:
                    callbacks[fd]()
                elif fd == source_fd:
                    typed = os.read(fd, _CHUNK)
                    if not typed:
                        poller.unregister(fd)
                        source_fd, typed = None, b"\x04"
                    os.write(self.master, typed)  # a terminal's input is small: the master takes it
                elif events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    open_master = self._drain(block=True)
                elif events & select.POLLOUT and source is not None:
                    if not pending:
                        pending = source.read(_CHUNK) or b""
                        if not pending:  # the source is at its end: ^D, once
                            pending, source = b"\x04", None
                    pending = pending[os.write(self.master, pending):]
                    if source is None and not pending:
                        poller.modify(self.master, select.POLLIN)
                if not open_master:
                    break

    def _drain(self, block: bool) -> bool:
        """Copy output to stdout; False once the terminal is done (EIO: no slave left)."""
        while True:
            try:
                data = os.read(self.master, _CHUNK)
            except BlockingIOError:
                return False  # after exit: nothing more is coming
            except OSError:
                return False
            if not data:
                return False
            sink = self.pipes.stdout
            if sink is not None:
                sink.write(data)
                if self._flush:
                    sink.flush()
            if block:
                return True

    def resize(self, height: int, width: int) -> None:
        """The terminal's size: the process sees SIGWINCH."""
        if self.master < 0:
            self._size = (height, width)  # applied when the terminal arrives
            return
        from execdriver.linux import terminal

        terminal.set_size(self.master, height, width)

    def close(self) -> None:
        self.release_child_ends()
        for fd in (self.master, self._ours):
            if fd >= 0:
                os.close(fd)
        self.master = self._ours = -1

# -- the caller's own terminal ----------------------------------------------------------------
#
# ``sandbox -t``, and ``run`` and ``exec`` of a process with a terminal but no
# --console-socket, as runc does: the container's pty is served through a
# TtyConsole on our own stdin and stdout; our terminal, if stdin is one, goes
# into raw mode so that every key (^C included) reaches the container, and
# comes back as it was on the way out, errors included. Window changes
# follow as SIGWINCH.


class Interactive:
    """A TtyConsole on our standard streams, with the host terminal raw while it runs."""

    def __init__(self) -> None:
        from types import SimpleNamespace
        from typing import cast

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
        import gc

        from execdriver.linux import signals

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
        from execdriver.linux import signals

        signals.signal_default(signals.SIGWINCH)
        if self._saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, self._saved)
        self.console.close()
