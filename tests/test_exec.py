"""Driver.exec: a new process inside a running container (the API's exec)."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from execdriver import Command, Hooks, NotRunningError, OOMEvents, Pipes, ProcessConfig
from execdriver.native.driver import NativeDriver
from tests.test_run import start_in_background, wait_for


@pytest.fixture()
def running(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> Iterator[Command]:
    """A container whose init sleeps, in its own thread; killed at the end."""
    command = Command(id=cid, rootfs=str(busybox_rootfs), hostname="execbox",
                      process_config=ProcessConfig(entrypoint="sleep", arguments=["60"]))
    thread, result = start_in_background(driver, command)
    assert "error" not in result, result
    yield command
    try:
        driver.terminate(command)
    except NotRunningError:
        pass
    thread.join(10)
    assert not thread.is_alive()


def exec_sh(driver: NativeDriver, command: Command, script: str, **fields: object) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    config = ProcessConfig(entrypoint="sh", arguments=["-c", script], **fields)  # type: ignore[arg-type]
    code = driver.exec(command, config, Pipes(stdout=out, stderr=err))
    return code, out.getvalue().decode(), err.getvalue().decode()


def test_exec_sees_the_containers_pids_hostname_mounts_and_cgroup(driver: NativeDriver, running: Command) -> None:
    pids: list[int] = []

    def on_start(_config: ProcessConfig, pid: int, _oom: OOMEvents) -> None:
        pids.append(pid)
        assert pid in driver.get_pids_for_container(running.id)  # in the cgroup, as it runs

    out = io.BytesIO()
    script = "echo $$; cat /proc/1/cmdline; echo; hostname; echo mark > /dev/shm/mark; sleep 0.2; exit 9"
    config = ProcessConfig(entrypoint="sh", arguments=["-c", script])
    code = driver.exec(running, config, Pipes(stdout=out), Hooks(start=on_start))
    assert code == 9
    own_pid, pid1, hostname = out.getvalue().decode().split("\n")[:3]
    assert own_pid != "1" and pid1.rstrip("\0").split("\0") == ["sleep", "60"] and hostname == "execbox"
    assert len(pids) == 1
    init = running.container_pid
    code, out_text, _ = exec_sh(driver, running, "cat /dev/shm/mark; readlink /proc/self/ns/mnt", user="nobody")
    assert code == 0 and out_text.split() == ["mark", os.readlink(f"/proc/{init}/ns/mnt")]


def test_stdin_and_stderr_pass_through(driver: NativeDriver, running: Command) -> None:
    out, err = io.BytesIO(), io.BytesIO()
    config = ProcessConfig(entrypoint="sh", arguments=["-c", "tr a-z A-Z; echo oops >&2"])
    code = driver.exec(running, config, Pipes(stdin=io.BytesIO(b"hello\n"), stdout=out, stderr=err))
    assert (code, out.getvalue(), err.getvalue()) == (0, b"HELLO\n", b"oops\n")


def test_exec_into_a_paused_or_stopped_container_raises(driver: NativeDriver, running: Command) -> None:
    driver.pause(running)
    with pytest.raises(NotRunningError, match="paused"):
        exec_sh(driver, running, "true")
    driver.unpause(running)
    driver.terminate(running)
    wait_for(lambda: not _alive(driver, running))
    with pytest.raises(NotRunningError):
        exec_sh(driver, running, "true")


def _alive(driver: NativeDriver, command: Command) -> bool:
    try:
        driver.get_pids_for_container(command.id)
    except NotRunningError:
        return False
    return True


def test_fifty_concurrent_execs(driver: NativeDriver, running: Command) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda n: exec_sh(driver, running, f"echo {n}; exit {n % 7}"), range(50)))
    assert [(code, out.strip()) for code, out, _ in results] == [(n % 7, str(n)) for n in range(50)]


def test_exec_processes_die_with_the_init(driver: NativeDriver, running: Command) -> None:
    result: dict[str, int] = {}
    started = threading.Event()

    def on_start(_config: ProcessConfig, pid: int, _oom: OOMEvents) -> None:
        started.set()

    def target() -> None:
        config = ProcessConfig(entrypoint="sleep", arguments=["60"])
        result["code"] = driver.exec(running, config, Pipes(), Hooks(start=on_start))

    thread = threading.Thread(target=target)
    thread.start()
    assert started.wait(10)
    driver.terminate(running)
    thread.join(10)
    assert result["code"] == 128 + 9  # SIGKILLed with its pid namespace
