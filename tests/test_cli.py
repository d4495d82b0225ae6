"""``execdriver sandbox`` through the real command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from execdriver.linux.cgroups.v1 import hierarchies
from execdriver.native.driver import NativeDriver
from tests.helpers import openable_block_device

CLI = [sys.executable, "-m", "execdriver"]


def sandbox(state_root: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "--root", str(state_root), "sandbox", *args], capture_output=True, text=True,
                          check=False, timeout=timeout, stdin=subprocess.DEVNULL)


def test_host_view_by_default(state_root: Path) -> None:
    script = "echo $$ $(hostname); touch /etc/x 2>/dev/null || echo ro; echo t > /tmp/t && echo tmp; exit 3"
    result = sandbox(state_root, "--", "sh", "-c", script)
    assert result.returncode == 3, result.stderr
    assert result.stdout.split("\n")[:3] == ["1 sandbox", "ro", "tmp"]


def test_a_node_of_the_hosts_disk_can_be_made_and_not_opened(state_root: Path) -> None:
    """CAP_MKNOD makes any node; the devices cgroup decides what opens, for the sandbox command too."""
    major, minor = openable_block_device()
    script = f"mknod /dev/disk b {major} {minor} && echo made; head -c 1 /dev/disk >/dev/null && echo OPENED"
    result = sandbox(state_root, "--", "sh", "-c", script)
    assert result.stdout.split() == ["made"], (result.stdout, result.stderr)
    assert "Operation not permitted" in result.stderr
    privileged = sandbox(state_root, "--privileged", "--", "sh", "-c", script)  # the control: every device
    assert privileged.stdout.split() == ["made", "OPENED"], privileged.stderr


def test_rootfs_volumes_workdir_env_user(state_root: Path, rootfs: Path, tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    volume.mkdir()
    (volume / "in").write_text("input")
    script = "cat /data/in; echo; echo $FOO; pwd; id -u; hostname"
    result = sandbox(state_root, "--rootfs", str(rootfs), "--hostname", "cli-box", "-v", f"{volume}:/data:ro",
                     "-w", "/srv", "-e", "FOO=bar", "-u", "nobody", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:5] == ["input", "bar", "/srv", "65534", "cli-box"]


def test_stdin_passes_through(state_root: Path, busybox_rootfs: Path) -> None:
    result = subprocess.run([*CLI, "--root", str(state_root), "sandbox", "--rootfs", str(busybox_rootfs),
                             "tr", "a-z", "A-Z"], input="shout\n", capture_output=True, text=True, timeout=30,
                            check=False)
    assert result.returncode == 0 and result.stdout == "SHOUT\n"


def test_runtime_errors_exit_125(state_root: Path, busybox_rootfs: Path) -> None:
    result = sandbox(state_root, "--rootfs", str(busybox_rootfs), "nosuchcmd")
    assert result.returncode == 125
    assert 'exec: "nosuchcmd": executable file not found in $PATH' in result.stderr
    result = sandbox(state_root, "--rootfs", str(busybox_rootfs), "-v", "/no/such/path:/x", "true")
    assert result.returncode == 125 and "mounts[0].source" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_verbs_and_flags(state_root: Path) -> None:
    result = subprocess.run([*CLI, "frobnicate", "x"], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2 and "No help topic for 'frobnicate': unknown verb" in result.stderr
    result = subprocess.run([*CLI, "--bogus", "list"], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2 and "unknown flag --bogus" in result.stderr


def test_signals_are_forwarded(state_root: Path, busybox_rootfs: Path, tmp_path: Path) -> None:
    script = "trap 'exit 9' TERM; touch /ready/up; while true; do sleep 0.05; done"
    ready = tmp_path / "ready"
    ready.mkdir()
    cli = subprocess.Popen([*CLI, "--root", str(state_root), "sandbox", "--rootfs", str(busybox_rootfs),
                            "-v", f"{ready}:/ready", "sh", "-c", script],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not (ready / "up").exists():
            assert time.monotonic() < deadline and cli.poll() is None, cli.stderr.read() if cli.stderr else ""
            time.sleep(0.02)
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(20) == 9
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        for stream in (cli.stdout, cli.stderr):
            if stream is not None:
                stream.close()


def test_killing_the_api_process_removes_its_containers(state_root: Path, busybox_rootfs: Path,
                                                        cid: str) -> None:
    program = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
from execdriver import Command, Pipes, ProcessConfig
from execdriver.native.driver import NativeDriver
driver = NativeDriver(root={str(state_root)!r})
driver.run(Command(id={cid!r}, rootfs={str(busybox_rootfs)!r},
                   process_config=ProcessConfig(entrypoint="sleep", arguments=["60"])), Pipes())
"""
    api = subprocess.Popen([sys.executable, "-c", program])
    state_file = state_root / cid / "state.json"
    deadline = time.monotonic() + 20
    pid = 0
    try:
        while pid == 0:
            assert time.monotonic() < deadline and api.poll() is None
            if state_file.exists():
                pid = json.loads(state_file.read_text())["pid"]
            time.sleep(0.01)
    except BaseException:
        api.kill()  # its fork server then kills the container
        api.wait()
        raise
    os.kill(api.pid, signal.SIGKILL)
    api.wait()
    memory = Path(hierarchies().get("memory", "/nonexistent")) / "execdriver" / cid
    while os.path.exists(f"/proc/{pid}") or (state_root / cid).exists() or memory.exists():
        assert time.monotonic() < deadline, "container, cgroup or state outlived the killed API process"
        time.sleep(0.01)


def test_stats_table_json_and_watch(driver: NativeDriver, busybox_rootfs: Path, state_root: Path,
                                    cid: str) -> None:
    from execdriver import Command
    from tests.helpers import shell
    from tests.test_run import start_in_background

    thread, _ = start_in_background(driver, shell(cid, busybox_rootfs, "while :; do :; done"))
    base = [*CLI, "--root", str(state_root), "stats"]
    try:
        table = subprocess.run([*base, cid], capture_output=True, text=True, timeout=30, check=True).stdout
        header, row = table.strip().split("\n")
        assert header.split()[:3] == ["CONTAINER", "CPU", "%"]
        assert row.startswith(cid) and float(row.split()[1].rstrip("%")) > 20  # it spins
        sample = json.loads(subprocess.run([*base, "--json", cid], capture_output=True, text=True, timeout=30,
                                           check=True).stdout)
        assert sample["cgroup_stats"]["pids_stats"]["current"] == 1
        assert sample["cgroup_stats"]["cpu_stats"]["cpu_usage"]["total_usage"] > 0
        assert sample["interfaces"][0]["name"] == "lo" and sample["system_usage"] > 0
        watch = subprocess.Popen([*base, "--json", "--watch", "--interval", "0.1", cid], stdout=subprocess.PIPE,
                                 text=True)
        assert watch.stdout is not None
        lines = [watch.stdout.readline() for _ in range(3)]
        watch.send_signal(signal.SIGINT)
        assert watch.wait(10) == 0
        watch.stdout.close()
        usages = [json.loads(line)["cgroup_stats"]["cpu_stats"]["cpu_usage"]["total_usage"] for line in lines]
        assert usages == sorted(usages) and usages[0] < usages[-1]
    finally:
        driver.terminate(Command(id=cid))
        thread.join(10)
    gone = subprocess.run([*base, cid], capture_output=True, text=True, timeout=30, check=False)
    assert gone.returncode == 1 and "not running" in gone.stderr
