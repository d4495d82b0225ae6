"""Run untrusted Python like subprocess.run, in a container with limits and no network.

    python examples/sandbox.py 'print(sum(range(10)))'

The code runs with the host's python3 in a read-only view of the host's
filesystem (a private /tmp, /proc, /dev), as nobody, with Docker's
capabilities dropped entirely, under memory, CPU and pids limits, with
loopback alone for network; a time limit kills it. The result is a
subprocess.CompletedProcess, or subprocess.TimeoutExpired.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import uuid

from execdriver import Command, NotRunningError, Pipes, ProcessConfig, Resources
from execdriver.native.driver import NativeDriver


def run_untrusted(code: str, *, driver: NativeDriver, stdin: bytes = b"", timeout: float = 5.0,
                  memory: int = 128 << 20, cpus: float = 0.5, pids: int = 32) -> subprocess.CompletedProcess[bytes]:
    argv = ["python3", "-I", "-c", code]
    command = Command(
        id=f"sandbox-{uuid.uuid4().hex[:12]}", rootfs="/", readonly_rootfs=True, hostname="sandbox",
        cap_drop=["ALL"], no_new_privileges=True,
        resources=Resources(memory=memory, memory_swap=memory, cpu_quota=int(cpus * 100_000), cpu_period=100_000,
                            pids_limit=pids),
        process_config=ProcessConfig(entrypoint=argv[0], arguments=argv[1:], user="nobody"),
    )
    out, err = io.BytesIO(), io.BytesIO()
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        try:
            driver.terminate(command)
        except NotRunningError:
            pass

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        status = driver.run(command, Pipes(stdin=io.BytesIO(stdin), stdout=out, stderr=err))
    finally:
        timer.cancel()
    if timed_out.is_set():
        raise subprocess.TimeoutExpired(argv, timeout, out.getvalue(), err.getvalue())
    # As subprocess does: a negative return code for a signal (OOM kills are SIGKILL).
    returncode = -(status.exit_code - 128) if status.exit_code > 128 else status.exit_code
    return subprocess.CompletedProcess(argv, returncode, out.getvalue(), err.getvalue())


def main() -> None:
    with NativeDriver() as driver:
        result = run_untrusted(sys.argv[1] if len(sys.argv) > 1 else "print('hello from the sandbox')",
                               driver=driver)
    sys.stdout.buffer.write(result.stdout)
    sys.stderr.buffer.write(result.stderr)
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
