"""What the engine tests (containerd, docker, podman, Kubernetes) share: stopping a daemon, its mounts."""

from __future__ import annotations

import signal
import subprocess


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
