"""containerd drives execdriver as its runc (``ctr run --runc-binary``).

A containerd of our own, with its state in a temporary directory and the
CRI plugin off, imports a busybox image built here (no registry is
reachable) and runs it through containerd-shim-runc-v2 with execdriver as
the runtime binary, exactly as it would run runc.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import engines
from tests.engines import LAUNCHER, SHIM_DIRS, SYSTEMD, V2, cgroup_roots, containerd_config, stop, unmount_below
from tests.images import docker_archive

IMAGE = "localhost/busybox:latest"



@pytest.fixture(autouse=True, scope="module")
def _installed() -> None:
    engines.require("containerd", "ctr")


class Containerd:
    def __init__(self, work: Path, namespace: str) -> None:
        self.work, self.namespace = work, namespace
        self.socket = work / "containerd.sock"
        self.runtime_root = work / "execdriver-root"

    def ctr(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["ctr", "-a", str(self.socket), "-n", self.namespace, *args], capture_output=True,
                                text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"ctr {args}: exit {result.returncode}: {result.stderr}")
        return result

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.ctr("run", "--runc-binary", str(LAUNCHER), "--runc-root", str(self.runtime_root),
                        "--fifo-dir", str(self.work / "fifo"), *args, check=check)


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Iterator[Containerd]:
    work = tmp_path_factory.mktemp("containerd")
    run_dirs = [d for d in SHIM_DIRS if not os.path.exists(d)]
    (work / "config.toml").write_text(containerd_config(work, 'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'))
    log = open(work / "containerd.log", "wb")  # noqa: SIM115 - closed below
    daemon = subprocess.Popen(["containerd", "--config", str(work / "config.toml")], stdout=log, stderr=log,
                              start_new_session=True)
    client = Containerd(work, f"execdriver-test-{uuid.uuid4().hex[:8]}")
    try:
        deadline = time.monotonic() + 30
        while not client.socket.exists():
            assert daemon.poll() is None and time.monotonic() < deadline, (work / "containerd.log").read_text()
            time.sleep(0.05)
        client.ctr("images", "import", str(docker_archive(busybox_rootfs, work / "busybox.tar")))
        yield client
    finally:
        for task in client.ctr("task", "ls", "-q", check=False).stdout.split():
            client.ctr("task", "kill", "-s", "SIGKILL", task, check=False)
            client.ctr("task", "rm", "-f", task, check=False)
        for container in client.ctr("container", "ls", "-q", check=False).stdout.split():
            client.ctr("container", "rm", container, check=False)
        stop(daemon, 30)
        log.close()
        unmount_below(work)
        for controller in cgroup_roots():  # what a failed test left (no_trace_of fails then)
            parent = os.path.join(controller, client.namespace)
            if os.path.isdir(parent):
                os.rmdir(parent)
        for directory in reversed(run_dirs):
            if os.path.isdir(directory) and not os.listdir(directory):
                os.rmdir(directory)


@pytest.fixture()
def name() -> str:
    return f"c{uuid.uuid4().hex[:10]}"


def no_trace_of(containerd: Containerd, name: str) -> None:
    assert not (containerd.runtime_root / containerd.namespace / name).exists()
    # The namespace's cgroup (ctr's cgroupsPath is /<namespace>/<id>) was made for the container: it goes too.
    for controller in cgroup_roots():
        assert not os.path.exists(os.path.join(controller, containerd.namespace))
    assert not os.path.exists(f"/sys/fs/cgroup/system.slice/execdriver-test-{name}.scope")


def test_run_rm_output_and_exit_code(containerd: Containerd, name: str) -> None:
    result = containerd.run("--rm", IMAGE, name, "sh", "-c", "echo hello from containerd; exit 3", check=False)
    assert result.returncode == 3, result.stderr
    assert result.stdout == "hello from containerd\n"
    no_trace_of(containerd, name)


def test_run_with_a_tty(containerd: Containerd, name: str) -> None:
    # ctr -t wants a terminal of its own: it runs on the slave of a pty pair.
    from tests.test_interactive import drive

    argv = ["ctr", "-a", str(containerd.socket), "-n", containerd.namespace, "run", "-t", "--rm", "--runc-binary",
            str(LAUNCHER), "--runc-root", str(containerd.runtime_root), "--fifo-dir", str(containerd.work / "fifo"),
            IMAGE, name, "sh", "-c", "tty; echo ready; read line; echo got $line; exit 6"]
    code, shown, _, _ = drive(argv, (b"ready", b"typed\r"))
    # Two terminals in a row (the container's, then ctr's own): each turns \n into \r\n. (The size is
    # ctr's to set after the start, so it is not checked here.)
    lines = shown.replace(b"\r", b"").split(b"\n")
    assert code == 6, shown
    assert lines[0] == b"/dev/pts/0" and b"got typed" in lines, shown
    no_trace_of(containerd, name)


def test_limits_reach_the_container(containerd: Containerd, name: str) -> None:
    # ctr mounts no cgroup filesystem in the container: the limits are read on
    # the host, at the cgroupsPath ctr chose (/<namespace>/<id>), or, where systemd
    # runs on cgroup v2, in the scope of a slice:prefix:name path, as the kubelet's
    # containerd (SystemdCgroup = true) asks for.
    from execdriver.linux.cgroups.v1 import hierarchies

    if SYSTEMD:
        options = ["--runc-systemd-cgroup", "--cgroup", f"system.slice:execdriver-test:{name}"]
        memory = Path(f"/sys/fs/cgroup/system.slice/execdriver-test-{name}.scope/memory.max")
    else:
        options = []
        memory = (Path("/sys/fs/cgroup") / containerd.namespace / name / "memory.max" if V2 else
                  Path(hierarchies()["memory"]) / containerd.namespace / name / "memory.limit_in_bytes")
    containerd.run("-d", *options, "--memory-limit", str(64 << 20), IMAGE, name, "sleep", "300")
    try:
        assert memory.read_text().strip() == str(64 << 20)
    finally:
        containerd.ctr("task", "kill", "-s", "SIGKILL", name, check=False)
        containerd.ctr("task", "rm", "-f", name, check=False)
        containerd.ctr("container", "rm", name, check=False)
    no_trace_of(containerd, name)


def test_detached_task_ps_pause_resume_metrics_kill(containerd: Containerd, name: str) -> None:
    containerd.run("-d", IMAGE, name, "sh", "-c", "sleep 300 & sleep 301; true")
    try:
        tasks = containerd.ctr("task", "ls").stdout
        assert name in tasks and "RUNNING" in tasks
        pids = containerd.ctr("task", "ps", name).stdout.split("\n")[1:]
        assert len([line for line in pids if line.strip()]) == 3
        exec_id = f"{name}-exec"
        result = containerd.ctr("task", "exec", "--exec-id", exec_id, name, "sh", "-c", "cat /proc/1/cmdline; exit 3",
                                check=False)
        assert result.returncode == 3 and result.stdout.startswith("sh\x00-c\x00sleep 300"), result
        containerd.ctr("task", "pause", name)
        assert "PAUSED" in containerd.ctr("task", "ls").stdout
        containerd.ctr("task", "resume", name)
        assert "RUNNING" in containerd.ctr("task", "ls").stdout
        metrics = containerd.ctr("task", "metrics", name).stdout
        assert "memory.usage" in metrics  # (v1: memory.usage_in_bytes; v2: memory.usage)
        containerd.ctr("task", "kill", "-a", "-s", "SIGKILL", name)
        deadline = time.monotonic() + 20
        while "STOPPED" not in containerd.ctr("task", "ls").stdout:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        containerd.ctr("task", "rm", "-f", name, check=False)
        containerd.ctr("container", "rm", name, check=False)
    no_trace_of(containerd, name)
