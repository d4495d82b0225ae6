"""Kubernetes through containerd: the CRI plugin with execdriver as a runtime handler.

The handler's configuration is taken from docs/kubernetes.md as it is
written there (with this machine's path to the runtime), so the page
cannot be wrong without this test failing.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from execdriver.linux.cgroups.v1 import hierarchies
from tests import engines
from tests.engines import LAUNCHER, SHIM_DIRS, containerd_config, stop
from tests.images import docker_archive

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTED = "/opt/execdriver/.venv/bin/execdriver"



@pytest.fixture(autouse=True, scope="module")
def _installed() -> None:
    engines.require("containerd")


def _handler_config() -> str:
    page = (ROOT / "docs" / "kubernetes.md").read_text()
    block = re.search(r"```toml\n(.*?)```", page, re.S)
    assert block is not None, "docs/kubernetes.md has no containerd configuration"
    return block.group(1).replace(DOCUMENTED, str(LAUNCHER))


@pytest.mark.timeout(180)
def test_containerd_loads_the_handler_and_runs_a_container_with_it(busybox_rootfs: Path, tmp_path: Path) -> None:
    work = tmp_path
    (work / "cni").mkdir()
    made_here = [d for d in SHIM_DIRS if not os.path.exists(d)]
    config = work / "config.toml"
    config.write_text(containerd_config(work, tables=f"""[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/busybox:latest"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{work}/cni"
    conf_dir = "{work}/cni"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
{_handler_config()}"""))
    with open(work / "containerd.log", "wb") as log:
        daemon = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=log,
                                  start_new_session=True)
    socket_path = work / "containerd.sock"
    namespace = f"execdriver-k8s-{uuid.uuid4().hex[:8]}"

    def ctr(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["ctr", "-a", str(socket_path), "-n", namespace, *args], capture_output=True,
                                text=True, timeout=60, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"ctr {args}: {result.stderr}")
        return result

    try:
        deadline = time.monotonic() + 30
        while not socket_path.exists():
            assert daemon.poll() is None and time.monotonic() < deadline, (work / "containerd.log").read_text()
            time.sleep(0.05)
        plugins = ctr("plugins", "ls").stdout
        cri = [line for line in plugins.splitlines() if "io.containerd.grpc.v1" in line and " cri " in line]
        assert cri and cri[0].split()[-1] == "ok", (plugins, (work / "containerd.log").read_text()[-3000:])
        dumped = subprocess.run(["containerd", "--config", str(config), "config", "dump"], capture_output=True,
                                text=True, timeout=60, check=True).stdout
        assert 'runtimes.execdriver]' in dumped and f'BinaryName = "{LAUNCHER}"' in dumped
        assert 'runtime_type = "io.containerd.runc.v2"' in dumped

        # A container through the runc shim with the handler's options: the shim runs execdriver.
        ctr("images", "import", str(docker_archive(busybox_rootfs, work / "busybox.tar")))
        name = f"k8s-{uuid.uuid4().hex[:8]}"
        out = ctr("run", "--rm", "--runtime", "io.containerd.runc.v2", "--runc-binary", str(LAUNCHER),
                  "--fifo-dir", str(work / "fifo"),
                  "--runc-root", str(work / "execdriver-root"), "localhost/busybox:latest", name,
                  "sh", "-c", "echo hello from execdriver; cat /proc/1/cgroup | grep -c freezer").stdout
        assert out.split() == ["hello", "from", "execdriver", "1"]
        # The shim gives each namespace a state directory: the container's is gone from it.
        assert [p for p in (work / "execdriver-root").glob("*/*") if not p.name.startswith(".")] == []
        # So is the namespace's cgroup that its cgroupsPath (/<namespace>/<id>) made.
        assert [c for c in hierarchies().values() if os.path.exists(os.path.join(c, namespace))] == []
    finally:
        for image in ctr("images", "ls", "-q", check=False).stdout.split():
            ctr("images", "rm", image, check=False)
        stop(daemon, 20)
        subprocess.run(["umount", "-R", str(work / "root")], capture_output=True, check=False)
        subprocess.run(["umount", "-R", str(work / "state")], capture_output=True, check=False)
        for directory in reversed(made_here):
            if os.path.isdir(directory) and not os.listdir(directory):
                os.rmdir(directory)
        for controller in set(hierarchies().values()):  # what a failure left (the assertion above fails then)
            if os.path.isdir(os.path.join(controller, namespace)):
                os.rmdir(os.path.join(controller, namespace))
