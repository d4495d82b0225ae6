"""What the engine tests (containerd, docker, podman, Kubernetes) share: programs, stopping a daemon, mounts."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

LAUNCHER = Path(sys.executable).parent / "execdriver"


def require(*programs: str) -> None:
    """Fail, naming what is missing: scripts/setup.sh installs the engines and the execdriver command.

    A skip here would pass a suite in which no engine ever ran execdriver.
    """
    missing = [name for name in programs if shutil.which(name) is None and not os.path.exists(name)]
    if not LAUNCHER.exists():
        missing.append(str(LAUNCHER))
    if missing:
        pytest.fail(f"not installed: {', '.join(missing)} (scripts/setup.sh installs them)")


def stop(daemon: subprocess.Popen[bytes], seconds: float) -> None:
    """SIGTERM, and SIGKILL should it not stop within ``seconds``."""
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(seconds)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()


def unmount_below(directory: object) -> None:
    """Lazily unmount whatever an engine left mounted under ``directory``, deepest first."""
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        mounts = [line.split()[4] for line in mountinfo if str(directory) in line.split()[4]]
    for mount_point in sorted(mounts, reverse=True):
        subprocess.run(["umount", "-l", mount_point], check=False)


# The shim's own directories, which containerd makes where they are missing (a fixture removes those it made).
SHIM_DIRS = ("/run/containerd", "/run/containerd/s", "/run/containerd/fifo")


def containerd_config(work: object, top: str = "", tables: str = "") -> str:
    """A containerd of the test's own: root, state, sockets and the opt plugin's directory under ``work``.

    ``top`` adds top-level keys, ``tables`` more tables.
    """
    return f"""version = 2
root = "{work}/root"
state = "{work}/state"
{top}[grpc]
  address = "{work}/containerd.sock"
[ttrpc]
  address = "{work}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{work}/opt"
{tables}"""
