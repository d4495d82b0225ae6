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


def _systemd_v2() -> bool:
    from execdriver.linux import cgroups
    from execdriver.linux.cgroups import systemd

    return systemd.running() and cgroups.version() == 2


# On a host with systemd and cgroup v2 (the guest), the engines use the systemd cgroup driver,
# as they do by default on users' hosts (podman, docker) and as the kubelet asks (containerd).
SYSTEMD = _systemd_v2()
V2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
# What a process in the container reads for its memory and pids limits (the engines mount its cgroup there).
LIMIT_FILES = ("/sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max" if V2 else
               "/sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max")


def cgroup_roots() -> set[str]:
    """v2's root, or each v1 hierarchy's mount: where an engine's cgroups go."""
    from execdriver.linux.cgroups.v1 import hierarchies

    return {"/sys/fs/cgroup"} if V2 else set(hierarchies().values())


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
