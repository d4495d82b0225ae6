"""podman drives execdriver as its OCI runtime (``podman --runtime``), with its default seccomp profile.

podman with its storage in a temporary directory and the settings that this
machine needs (shared notes, engines.md): no network namespace setup,
cgroupfs, file events, ulimits under the hard limit. podman passes no
--root to every verb, so a small wrapper pins execdriver's state directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import engines
from tests.engines import LAUNCHER, LIMIT_FILES, SYSTEMD, cgroup_roots, unmount_below
from tests.images import docker_archive

IMAGE = "localhost/busybox:latest"
MANAGER = "systemd" if SYSTEMD else "cgroupfs"  # podman's own default where systemd runs on cgroup v2



@pytest.fixture(autouse=True, scope="module")
def _installed() -> None:
    engines.require("podman", "conmon")


class Podman:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.runtime_root = work / "execdriver-root"
        self.env = {**os.environ, "CONTAINERS_CONF": str(work / "containers.conf"),
                    "CONTAINERS_STORAGE_CONF": str(work / "storage.conf")}

    def __call__(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = ["podman", "--root", str(self.work / "root"), "--runroot", str(self.work / "runroot"),
                   "--storage-driver", "overlay", "--cgroup-manager", MANAGER, "--events-backend", "file",
                   "--tmpdir", str(self.work / "tmp"), "--runtime", str(self.work / "runtime"), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=self.env,
                                stdin=subprocess.DEVNULL, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"podman {args}: exit {result.returncode}: {result.stderr}")
        return result


def _new_paths() -> list[str]:
    """What podman makes outside its --root and that the fixture removes, if it was not there."""
    paths = ["/var/lib/containers", "/dev/shm/libpod_lock"]
    for controller in sorted(cgroup_roots()):
        paths += [os.path.join(controller, "libpod_parent")]
    return [path for path in paths if not os.path.exists(path)]


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Iterator[Podman]:
    work = tmp_path_factory.mktemp("podman")
    new_paths = _new_paths()
    (work / "containers.conf").write_text(
        '[containers]\nnetns = "none"\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
        f'[engine]\ncgroup_manager = "{MANAGER}"\nevents_logger = "file"\n')
    (work / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\nrunroot = "{work}/runroot"\ngraphroot = "{work}/root"\n')
    (work / "runtime").write_text(f'#!/bin/sh\nexec {LAUNCHER} --root {work}/execdriver-root "$@"\n')
    (work / "runtime").chmod(0o755)
    client = Podman(work)
    try:
        client("load", "-i", str(docker_archive(busybox_rootfs, work / "busybox.tar")))
        yield client
    finally:
        client("rm", "-a", "-f", check=False)
        client("rmi", "-a", "-f", check=False)
        unmount_below(work)
        for path in new_paths:
            if path.startswith("/sys/fs/cgroup"):
                for child in ("conmon", ""):
                    directory = os.path.join(path, child) if child else path
                    if os.path.isdir(directory):
                        os.rmdir(directory)
            elif os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.unlink(path)


@pytest.fixture()
def name() -> str:
    return f"p{uuid.uuid4().hex[:10]}"


def no_trace_of(podman: Podman, container_id: str) -> None:
    assert not (podman.runtime_root / container_id).exists()
    if SYSTEMD:  # podman's scope machine.slice/libpod-<id>.scope
        assert not os.path.exists(f"/sys/fs/cgroup/machine.slice/libpod-{container_id}.scope")
    for controller in cgroup_roots():
        assert not os.path.exists(os.path.join(controller, "libpod_parent", f"libpod-{container_id}"))


def test_run_rm_output_exit_code_and_limits(podman: Podman, name: str) -> None:
    script = f"echo hello from podman; cat {LIMIT_FILES}; grep Seccomp: /proc/self/status; exit 4"
    result = podman("run", "--rm", "--name", name, "--memory", "64m", "--pids-limit", "20", IMAGE, "sh", "-c",
                    script, check=False)
    assert result.returncode == 4, result.stderr
    assert result.stdout.split("\n")[:4] == ["hello from podman", str(64 << 20), "20", "Seccomp:\t2"]


def test_tty_run_and_exec(podman: Podman, name: str) -> None:
    result = podman("run", "--rm", "-t", IMAGE, "sh", "-c", "tty; test -t 0 && echo isatty")
    assert result.stdout.splitlines()[:2] == ["/dev/pts/0", "isatty"], result
    podman("run", "-d", "--name", name, IMAGE, "sleep", "300")
    try:
        assert podman("exec", "-t", name, "tty").stdout.strip() == "/dev/pts/0"
    finally:
        podman("rm", "-f", name, check=False)


def test_detached_pause_stats_top_stop_start_kill_rm(podman: Podman, name: str) -> None:
    container_id = podman("run", "-d", "--name", name, IMAGE, "sleep", "300").stdout.strip()
    try:
        assert "Up" in podman("ps", "--filter", f"name={name}", "--format", "{{.Status}}").stdout
        podman("pause", name)
        assert "Paused" in podman("ps", "-a", "--filter", f"name={name}", "--format", "{{.Status}}").stdout
        podman("unpause", name)
        assert name in podman("stats", "--no-stream", name).stdout
        assert "sleep 300" in podman("top", name).stdout
        assert podman("exec", "-e", "WHO=podman", name, "sh", "-c", "echo $WHO; cat /proc/1/cmdline").stdout == (
            "podman\nsleep\x00300\x00")
        assert podman("exec", name, "sh", "-c", "exit 3", check=False).returncode == 3
        podman("stop", "-t", "1", name)
        assert "Exited" in podman("ps", "-a", "--filter", f"name={name}", "--format", "{{.Status}}").stdout
        podman("start", name)
        assert "Up" in podman("ps", "--filter", f"name={name}", "--format", "{{.Status}}").stdout
        podman("kill", name)
    finally:
        podman("rm", "-f", name, check=False)
    no_trace_of(podman, container_id)
