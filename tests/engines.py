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
