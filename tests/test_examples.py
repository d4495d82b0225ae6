"""Every example in examples/ runs, and does what its docstring says."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from examples.judge import SUBMISSIONS, judge_all
from examples.sandbox import run_untrusted
from examples.web_service import serve_and_fetch
from execdriver.native.driver import NativeDriver

ROOT = Path(__file__).resolve().parent.parent


def test_sandbox_behaves_like_subprocess_run(driver: NativeDriver) -> None:
    result = run_untrusted("import os, sys; print(input()[::-1], os.getuid()); sys.exit(3)", driver=driver,
                           stdin=b"abc\n")
    assert (result.returncode, result.stdout, result.stderr) == (3, b"cba 65534\n", b"")
    blocked = run_untrusted("import socket; socket.create_connection(('10.0.0.1', 80), timeout=1)",
                            driver=driver)
    assert blocked.returncode == 1 and b"Network is unreachable" in blocked.stderr
    with pytest.raises(subprocess.TimeoutExpired):
        run_untrusted("while True: pass", driver=driver, timeout=0.5)
    forked = run_untrusted("import os\nfor _ in range(100): os.fork()", driver=driver, pids=16)
    assert forked.returncode != 0 and b"Resource temporarily unavailable" in forked.stderr


def test_judge_gives_every_verdict(driver: NativeDriver) -> None:
    assert judge_all(SUBMISSIONS, driver) == {
        "correct": "accepted", "wrong": "wrong answer", "slow": "time limit exceeded",
        "greedy": "memory limit exceeded", "crash": "runtime error (3)",
    }


def test_web_service_is_reached_through_its_published_port(driver: NativeDriver) -> None:
    bridge = f"edx{uuid.uuid4().hex[:8]}"
    assert serve_and_fetch(driver, bridge) == "web\n"  # the container's own /etc/hostname
    assert not Path(f"/sys/class/net/{bridge}").exists()


@pytest.mark.parametrize(("script", "args", "expected"), [
    ("sandbox.py", ["print(6 * 7)"], "42\n"),
    ("judge.py", [], "correct    accepted\n"),
    ("web_service.py", [], "the container's /etc/hostname, through its published port: web\n"),
])
def test_the_examples_run_as_scripts(state_root: Path, script: str, args: list[str], expected: str) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], capture_output=True,
                            text=True, timeout=120, check=False,
                            env={**os.environ, "EXECDRIVER_ROOT": str(state_root)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(expected), result.stdout
