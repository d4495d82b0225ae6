"""dockerd drives execdriver as a runtime (``"runtimes": {"execdriver": ...}``), seccomp and prestart hook included.

A dockerd of our own, with its data, exec root and socket in a temporary
directory and no networking of the host touched (bridge none, no iptables),
runs the busybox image built here with ``--runtime=execdriver`` through its
own containerd and containerd-shim-runc-v2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import engines
from tests.engines import LAUNCHER, LIMIT_FILES, SYSTEMD, V2, cgroup_roots, stop, unmount_below
from tests.images import docker_archive

IMAGE = "localhost/busybox:latest"
CLIENT = "/usr/bin/docker"  # Debian's, the one that matches this dockerd



@pytest.fixture(autouse=True, scope="module")
def _installed() -> None:
    engines.require("dockerd", CLIENT)


class Docker:
    def __init__(self, work: Path) -> None:
        self.work = work

    def __call__(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([CLIENT, "-H", f"unix://{self.work}/docker.sock", *args], capture_output=True,
                                text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {args}: exit {result.returncode}: {result.stderr}")
        return result

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self("run", "--network", "none", "--runtime", "execdriver", *args, check=check)


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Iterator[Docker]:
    work = tmp_path_factory.mktemp("docker")
    # (dockerd's own containerd makes /opt/containerd for its opt plugin.)
    outside = ["/run/docker", "/run/containerd", "/opt/containerd",
               *(os.path.join(c, "docker") for c in cgroup_roots())]
    new_paths = [path for path in outside if not os.path.exists(path)]
    (work / "daemon.json").write_text(json.dumps({
        "data-root": f"{work}/data", "exec-root": f"{work}/exec", "pidfile": f"{work}/docker.pid",
        "hosts": [f"unix://{work}/docker.sock"], "iptables": False, "ip6tables": False, "ip-forward": False,
        "ip-masq": False, "bridge": "none", "userland-proxy": False, "storage-driver": "overlay2",
        "exec-opts": [f"native.cgroupdriver={'systemd' if SYSTEMD else 'cgroupfs'}"],
        "default-ulimits": {"nofile": {"Name": "nofile", "Hard": 20000, "Soft": 20000}},
        "runtimes": {"execdriver": {"path": str(LAUNCHER)}}, "deprecated-key-path": f"{work}/key.json",
    }))
    log = open(work / "dockerd.log", "wb")  # noqa: SIM115 - closed below
    daemon = subprocess.Popen(["dockerd", "--config-file", str(work / "daemon.json")], stdout=log, stderr=log,
                              start_new_session=True)
    client = Docker(work)
    try:
        deadline = time.monotonic() + 60
        while client("version", check=False).returncode != 0:
            assert daemon.poll() is None and time.monotonic() < deadline, (work / "dockerd.log").read_text()[-2000:]
            time.sleep(0.2)
        client("load", "-i", str(docker_archive(busybox_rootfs, work / "busybox.tar")))
        yield client
    finally:
        client("rm", "-f", *client("ps", "-aq", check=False).stdout.split(), check=False)
        client("rmi", "-f", IMAGE, check=False)
        stop(daemon, 60)
        log.close()
        unmount_below(work)
        for path in new_paths:
            if path.startswith("/sys/fs/cgroup"):
                if os.path.isdir(path):
                    os.rmdir(path)
            else:
                shutil.rmtree(path, ignore_errors=True)


@pytest.fixture()
def name() -> str:
    return f"d{uuid.uuid4().hex[:10]}"


def cgroup_of(container_id: str) -> Path:
    """Where docker puts a container's cgroup: a scope docker-<id>.scope with systemd, else /docker/<id>."""
    if SYSTEMD:
        return Path("/sys/fs/cgroup/system.slice") / f"docker-{container_id}.scope"
    from execdriver.linux.cgroups.v1 import hierarchies

    return Path("/sys/fs/cgroup" if V2 else hierarchies()["memory"]) / "docker" / container_id


def test_run_rm_output_exit_code_and_limits(docker: Docker, name: str) -> None:
    script = f"echo hello from docker; cat {LIMIT_FILES}; grep Seccomp: /proc/self/status; exit 5"
    result = docker.run("--rm", "--name", name, "-m", "64m", "--pids-limit", "20", IMAGE, "sh", "-c", script,
                        check=False)
    assert result.returncode == 5, result.stderr
    assert result.stdout.split("\n")[:4] == ["hello from docker", str(64 << 20), "20", "Seccomp:\t2"]


def test_tty_run_and_exec(docker: Docker, name: str) -> None:
    result = docker.run("--rm", "-t", IMAGE, "sh", "-c", "tty; test -t 0 && echo isatty")
    assert result.stdout.splitlines()[:2] == ["/dev/pts/0", "isatty"], result
    docker.run("-d", "--name", name, IMAGE, "sleep", "300")
    try:
        assert docker("exec", "-t", name, "tty").stdout.strip() == "/dev/pts/0"
    finally:
        docker("rm", "-f", name, check=False)


def test_detached_pause_stats_top_update_restart_kill(docker: Docker, name: str) -> None:
    container_id = docker.run("-d", "--name", name, IMAGE, "sleep", "300").stdout.strip()
    try:
        docker("pause", name)
        assert "Paused" in docker("ps", "--filter", f"name={name}", "--format", "{{.Status}}").stdout
        docker("unpause", name)
        assert name in docker("stats", "--no-stream", name).stdout
        assert "sleep 300" in docker("top", name).stdout
        assert docker("exec", "-e", "WHO=docker", name, "sh", "-c", "echo $WHO; hostname").stdout.split() == [
            "docker", container_id[:12]]
        assert docker("exec", name, "sh", "-c", "exit 3", check=False).returncode == 3
        docker("update", "--memory", "128m", "--memory-swap", "128m", name)
        limit = cgroup_of(container_id) / ("memory.max" if V2 else "memory.limit_in_bytes")
        assert limit.read_text().strip() == str(128 << 20)
        docker("restart", "-t", "1", name)
        assert "Up" in docker("ps", "--filter", f"name={name}", "--format", "{{.Status}}").stdout
        docker("kill", name)
    finally:
        docker("rm", "-f", name, check=False)
    assert not cgroup_of(container_id).exists()
