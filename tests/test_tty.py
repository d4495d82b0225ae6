"""Terminals in the Python API: ProcessConfig.tty, console_size, and resize while it runs."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import IO, cast

from execdriver import Command, Hooks, OOMEvents, Pipes, ProcessConfig
from execdriver.native.driver import NativeDriver
from tests.test_exec import running  # noqa: F401 - the fixture


class Watcher(io.RawIOBase):
    """A writable sink with an event per marker, set when the marker has appeared in its data."""

    def __init__(self, *markers: bytes) -> None:
        self.data = b""
        self.seen = {marker: threading.Event() for marker in markers}

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.data += bytes(data)
        for marker, event in self.seen.items():
            if marker in self.data:
                event.set()
        return len(data)


def test_a_tty_process_has_a_terminal_of_the_given_size(driver: NativeDriver, busybox_rootfs: Path,
                                                        cid: str) -> None:
    script = "tty; stty size; test -t 0 && test -t 1 && test -t 2 && echo isatty; read line; echo got $line"
    config = ProcessConfig(entrypoint="sh", arguments=["-c", script], tty=True, console_size=(33, 101))
    out = io.BytesIO()
    status = driver.run(Command(id=cid, rootfs=str(busybox_rootfs), process_config=config),
                        Pipes(stdin=io.BytesIO(b"hello\n"), stdout=out))
    assert status.exit_code == 0
    lines = out.getvalue().decode().split("\r\n")
    assert [line for line in lines if line != "hello"][:4] == ["/dev/pts/0", "33 101", "isatty", "got hello"]


def test_resize_while_it_runs_sends_sigwinch(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    script = ("trap 'stty size; exit 0' WINCH; echo ready; "
              "i=0; while [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; exit 3")  # 10 s, then fail
    config = ProcessConfig(entrypoint="sh", arguments=["-c", script], tty=True, console_size=(24, 80))
    sink, resized = Watcher(b"ready", b"40 120"), threading.Event()

    def on_start(process_config: ProcessConfig, _pid: int, _oom: OOMEvents) -> None:
        def resize() -> None:
            assert sink.seen[b"ready"].wait(10)
            process_config.terminal.resize(40, 120)
            resized.set()
        threading.Thread(target=resize).start()

    status = driver.run(Command(id=cid, rootfs=str(busybox_rootfs), process_config=config),
                        Pipes(stdout=cast("IO[bytes]", sink)), Hooks(start=on_start))
    assert resized.is_set() and status.exit_code == 0
    assert sink.seen[b"40 120"].is_set(), sink.data


def test_exec_with_a_tty(driver: NativeDriver, running: Command) -> None:  # noqa: F811 - the fixture
    out = io.BytesIO()
    config = ProcessConfig(entrypoint="sh", arguments=["-c", "tty; stty size"], tty=True, console_size=(12, 34))
    assert driver.exec(running, config, Pipes(stdout=out)) == 0
    assert out.getvalue().decode().split("\r\n")[:2] == ["/dev/pts/0", "12 34"]
