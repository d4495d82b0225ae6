"""Crash safety: the runtime killed (SIGKILL) at each step of create, start, exec, delete and run.

``EXECDRIVER_CRASH_AT`` makes the process kill itself at a named point
(execdriver/faults.py). Afterwards ``delete --force`` (the CLI) or
``Driver.clean`` (the API) must leave no process, cgroup, state, mount,
network lease, rule, veth or bridge of the container, ``list`` must not
show it, and its id must be usable again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from execdriver.linux import process
from execdriver.native.driver import NativeDriver
from tests.test_network import _leases_of, _link_exists, _our_rules
from tests.test_oci import CLI, bundle  # noqa: F401 - fixture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Cli:
    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, *args: str, crash: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "EXECDRIVER_CRASH_AT": crash} if crash else None
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            done = subprocess.run([*CLI, "--root", str(self.root), *args], stdout=out, stderr=err, text=True,
                                  timeout=60, check=False, env=env, stdin=subprocess.DEVNULL)
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(done.args, done.returncode, out.read(), err.read())
        if check and result.returncode != 0:
            raise AssertionError(f"{args}: exit {result.returncode}: {result.stderr}")
        return result


def _traces(root: Path, container_id: str, pids: list[int]) -> list[str]:
    """Everything of ``container_id`` still on the host."""
    found = []
    if (root / container_id).exists():
        found.append(f"state {root / container_id}")
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        if (hierarchy / "execdriver" / container_id).exists():
            found.append(f"cgroup {hierarchy / 'execdriver' / container_id}")
    found += [f"process {pid}" for pid in pids if pid and process.is_alive(pid, process.start_time(pid) or -1)]
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        found += [f"mount {line.split()[4]}" for line in mountinfo if container_id in line]
    return found


def _pid_of(root: Path, container_id: str) -> int:
    try:
        return int(json.loads((root / container_id / "state.json").read_text()).get("pid", 0))
    except (OSError, ValueError):
        return 0


CLI_POINTS = [
    ("create", "claimed"), ("create", "cloned"), ("create", "saved"), ("create", "ready"), ("create", "created"),
    ("start", "start-begun"), ("start", "start-released"),
    ("exec", "exec-spawned"),
    ("delete", "delete-killed"), ("delete", "clean-removed"),
]


@pytest.mark.parametrize(("verb", "point"), CLI_POINTS)
def test_the_cli_killed_at_each_step_leaves_nothing_after_delete_force(
        verb: str, point: str, bundle: Callable[..., Path], tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "state"
    cli = Cli(root)
    cid = f"c-{uuid.uuid4().hex[:10]}"
    directory = bundle(["sleep", "30"])
    pids: list[int] = []
    if verb == "create":
        result = cli("create", "--bundle", str(directory), cid, crash=point, check=False)
        assert result.returncode == -signal.SIGKILL, result.stderr
    else:
        cli("create", "--bundle", str(directory), cid)
        pids.append(_pid_of(root, cid))
        if verb == "start":
            result = cli("start", cid, crash=point, check=False)
        elif verb == "exec":
            cli("start", cid)
            result = cli("exec", cid, "sleep", "30", crash=point, check=False)
        else:
            cli("start", cid)
            result = cli("delete", "--force", cid, crash=point, check=False)
        assert result.returncode == -signal.SIGKILL, result.stderr
    pids.append(_pid_of(root, cid))
    assert (root / cid).exists()  # the crash left something to clean up
    listed = cli("list", "-q").stdout.split()
    assert listed in ([], [cid])  # what is left is the container itself, not a ghost of another
    if listed:
        status = json.loads(cli("state", cid).stdout)["status"]
        assert status in ("creating", "created", "running", "stopped")
    cli("delete", "--force", cid)
    deadline = time.monotonic() + 10
    while traces := _traces(root, cid, pids):
        assert time.monotonic() < deadline, traces
        time.sleep(0.02)
    assert cli("list", "-q").stdout.split() == []
    # The id is free again.
    cli("run", "--bundle", str(bundle(["true"])), cid)
    assert _traces(root, cid, []) == []


_API = """
import sys
sys.path.insert(0, {root!r})
from execdriver import Command, Network, NetworkInterface, Pipes, PortBinding, ProcessConfig, Resources
from execdriver.native.driver import NativeDriver
driver = NativeDriver(root={state!r}, fork_server={fork_server!r}, subnet_pool=("10.213.0.0/16", 24))
network = Network(interface=NetworkInterface(bridge={bridge!r}, port_bindings={{"80/tcp": [PortBinding("", "")]}}))
driver.run(Command(id={cid!r}, rootfs={rootfs!r}, network=network, resources=Resources(memory=64 << 20),
                   process_config=ProcessConfig(entrypoint="sleep", arguments=["30"])), Pipes())
"""


@pytest.mark.parametrize("fork_server", [True, False])
@pytest.mark.parametrize("point", ["claimed", "cloned", "saved", "ready", "started"])
def test_the_api_killed_at_each_step_leaves_nothing_after_clean(point: str, fork_server: bool,
                                                                busybox_rootfs: Path, tmp_path: Path) -> None:
    root = tmp_path / "state"
    cid = f"a-{uuid.uuid4().hex[:10]}"
    bridge = f"edt{uuid.uuid4().hex[:8]}"
    script = _API.format(root=ROOT, state=str(root), fork_server=fork_server, bridge=bridge, cid=cid,
                         rootfs=str(busybox_rootfs))
    result = subprocess.run([sys.executable, "-c", script], env={**os.environ, "EXECDRIVER_CRASH_AT": point},
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == -signal.SIGKILL, result.stderr
    pids = [_pid_of(root, cid)]
    with NativeDriver(root=str(root), fork_server=False) as driver:
        driver.clean(cid)
        assert cid not in driver.list()
    deadline = time.monotonic() + 10
    while traces := [*_traces(root, cid, pids), *(["lease"] if _leases_of(root) else []),
                     *(["bridge"] if _link_exists(bridge) else []), *(["rules"] if _our_rules() else [])]:
        assert time.monotonic() < deadline, traces
        time.sleep(0.05)


def test_two_creates_of_one_id_at_once(bundle: Callable[..., Path], tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "state"
    cid = f"d-{uuid.uuid4().hex[:10]}"
    directory = bundle(["true"])
    for _ in range(5):
        # Files, not pipes: the winner's init keeps its stdio until it is deleted.
        with tempfile.TemporaryFile("w+") as first, tempfile.TemporaryFile("w+") as second:
            both = [subprocess.Popen([*CLI, "--root", str(root), "create", "--bundle", str(directory), cid],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=error, text=True)
                    for error in (first, second)]
            results = []
            for child, error in zip(both, (first, second), strict=True):
                code = child.wait(60)
                error.seek(0)
                results.append((code, error.read()))
        codes = sorted(code for code, _ in results)
        assert codes == [0, 1], results
        loser = next(err for code, err in results if code == 1)
        assert f"container id {cid} is already in use" in loser, loser
        Cli(root)("delete", "--force", cid)
        assert _traces(root, cid, []) == []


_WAVE = """
import sys
from concurrent.futures import ThreadPoolExecutor
sys.path.insert(0, {root!r})
from execdriver import Command, Pipes, ProcessConfig
from execdriver.native.driver import NativeDriver
with NativeDriver(root={state!r}) as driver:
    def one(index):
        command = Command(id=f"{prefix}-{{index}}", rootfs={rootfs!r}, process_config=ProcessConfig(
            entrypoint="sh", arguments=["-c", "exit $(( $1 % 3 ))", "sh", str(index)]))
        return driver.run(command, Pipes()).exit_code
    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = list(pool.map(one, range(50)))
print(" ".join(map(str, codes)))
"""


def test_two_hundred_containers_in_waves_from_four_processes(busybox_rootfs: Path, tmp_path: Path) -> None:
    root = tmp_path / "state"
    workers = [subprocess.Popen([sys.executable, "-c", _WAVE.format(root=ROOT, state=str(root), prefix=f"w{n}",
                                                                   rootfs=str(busybox_rootfs))],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(4)]
    outputs = [worker.communicate(timeout=240) for worker in workers]
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
        assert [int(code) for code in out.split()] == [index % 3 for index in range(50)]
    assert [name for name in os.listdir(root) if not name.startswith(".")] == []


def test_start_and_delete_of_one_container_at_once(bundle: Callable[..., Path], tmp_path: Path) -> None:  # noqa: F811
    """Operations on one id take turns: whichever goes first, the other sees what it left."""
    root = tmp_path / "state"
    cli = Cli(root)
    directory = bundle(["sleep", "30"])
    for _ in range(8):
        cid = f"r-{uuid.uuid4().hex[:10]}"
        cli("create", "--bundle", str(directory), cid)
        pids = [_pid_of(root, cid)]
        with tempfile.TemporaryFile("w+") as first, tempfile.TemporaryFile("w+") as second:
            racers = [subprocess.Popen([*CLI, "--root", str(root), *args], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=error)
                      for args, error in ((["start", cid], first), (["delete", "--force", cid], second))]
            codes = [racer.wait(60) for racer in racers]
            first.seek(0)
            start_error = first.read()
        assert codes[1] == 0
        # start won (and the container was then deleted) or lost (and says the container is gone).
        assert codes[0] == 0 or f"container {cid} does not exist" in start_error, start_error
        assert _traces(root, cid, pids) == []
