"""Signals and zombies: the foreground `run` passes signals on; --init reaps orphans."""

from __future__ import annotations

import io
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from execdriver import Pipes, ProcessConfig
from execdriver.native.driver import NativeDriver
from tests.helpers import shell
from tests.test_oci import CLI, bundle  # noqa: F401 - fixture
from tests.test_run import start_in_background


def test_oci_run_in_the_foreground_passes_signals_on(bundle: Callable[..., Path], tmp_path: Path) -> None:  # noqa: F811
    script = 'trap "echo got-term; exit 3" TERM; echo ready; while :; do sleep 0.05; done'
    with tempfile.TemporaryFile("w+") as out:
        cli = subprocess.Popen([*CLI, "--root", str(tmp_path / "state"), "run", "--bundle",
                                str(bundle(["sh", "-c", script])), "sig-run"],
                               stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while out.seek(0) == 0 and "ready" not in out.read():
                assert time.monotonic() < deadline and cli.poll() is None, "the container did not start"
                time.sleep(0.02)
            cli.send_signal(signal.SIGTERM)
            assert cli.wait(20) == 3
            out.seek(0)
            assert out.read().split() == ["ready", "got-term"]
        finally:  # on a failure: the CLI, then the container it leaves running
            if cli.poll() is None:
                cli.kill()
                cli.wait()
            subprocess.run([*CLI, "--root", str(tmp_path / "state"), "delete", "--force", "sig-run"],
                           capture_output=True, timeout=60, check=False)


def _zombies_in(driver: NativeDriver, command_id: str) -> list[str]:
    from execdriver import Command

    out = io.BytesIO()
    command = Command(id=command_id)
    driver.exec(command, ProcessConfig(entrypoint="ps", arguments=["-o", "stat,comm"]), Pipes(stdout=out))
    return [line for line in out.getvalue().decode().splitlines()[1:] if line.startswith("Z")]


def test_init_reaps_the_orphans_that_pid_1_would_leave(driver: NativeDriver, busybox_rootfs: Path,
                                                       cid: str) -> None:
    # The orphaned sleep goes to pid 1: a `sleep` there never waits, tini does.
    script = "(sleep 0.1 &); exec sleep 30"
    for init, zombies in ((False, 1), (True, 0)):
        command = shell(f"{cid}-{int(init)}", busybox_rootfs, script, init=init)
        thread, _ = start_in_background(driver, command)
        try:
            time.sleep(0.6)
            assert len(_zombies_in(driver, command.id)) == zombies
        finally:
            driver.terminate(command)
            thread.join(10)
