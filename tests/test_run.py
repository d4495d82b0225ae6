"""The native driver's run path, on real namespaces, mounts and processes."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from execdriver import (
    Command,
    ContainerExistsError,
    Hooks,
    Mount,
    NotRunningError,
    OOMEvents,
    Pipes,
    ProcessConfig,
)
from execdriver.linux import cgroups, process
from execdriver.linux.cgroups.v1 import hierarchies
from execdriver.native.driver import NativeDriver
from tests.helpers import openable_block_device, run, shell


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def start_in_background(driver: NativeDriver, command: Command) -> tuple[threading.Thread, dict[str, object]]:
    """Run ``command`` in a thread; returns the thread and where its result lands."""
    result: dict[str, object] = {}
    started = threading.Event()

    def on_start(_config: ProcessConfig, pid: int, _oom: OOMEvents) -> None:
        result["pid"] = pid
        started.set()

    def target() -> None:
        try:
            result["status"] = driver.run(command, Pipes(stdout=io.BytesIO()), Hooks(start=on_start))
        except BaseException as err:  # noqa: BLE001 - handed to the test
            result["error"] = err
            started.set()

    thread = threading.Thread(target=target)
    thread.start()
    assert started.wait(10), "container did not start"
    return thread, result


# -- isolation -------------------------------------------------------------


def test_namespaces_are_isolated(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    script = (
        "echo pid=$$; echo host=$(hostname); echo procs=$(ls /proc | grep '^[0-9]' | tr '\\n' ' '); "
        "echo net=$(ls /sys/class/net | tr '\\n' ' '); "
        "for ns in ipc uts net pid mnt; do echo ns_$ns=$(readlink /proc/self/ns/$ns); done"
    )
    status, out, err = run(driver, shell(cid, busybox_rootfs, script, hostname="box1"))
    assert status.exit_code == 0, err
    lines = dict(line.split("=", 1) for line in out.split("\n") if "=" in line)
    assert lines["pid"] == "1"
    assert lines["host"] == "box1"
    # Only the shell and its pipeline: nothing of the host.
    assert 1 in {int(p) for p in lines["procs"].split()}
    assert max(int(p) for p in lines["procs"].split()) < 10
    assert lines["net"].split() == ["lo"]
    for ns in ("ipc", "uts", "net", "pid", "mnt"):
        assert lines[f"ns_{ns}"] != os.readlink(f"/proc/self/ns/{ns}"), f"{ns} namespace is the host's"


def test_loopback_is_up(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    status, out, _ = run(driver, shell(cid, busybox_rootfs, "cat /sys/class/net/lo/operstate; ip -o link"))
    assert status.exit_code == 0
    assert "LOOPBACK,UP" in out


def test_ipc_objects_are_private(driver: NativeDriver, cid: str) -> None:
    # Runs on the host view: busybox has no ipcmk, the host's util-linux does.
    def host_view(script: str) -> Command:
        return Command(id=cid, rootfs="/", readonly_rootfs=True,
                       process_config=ProcessConfig(entrypoint="/bin/sh", arguments=["-c", script]))

    host_segments = Path("/proc/sysvipc/shm").read_text()
    status, out, err = run(driver, host_view("ipcmk -M 4096 >/dev/null && tail -n +2 /proc/sysvipc/shm | wc -l"))
    assert status.exit_code == 0 and out.strip() == "1", err
    assert Path("/proc/sysvipc/shm").read_text() == host_segments  # the host never saw it
    status, out, _ = run(driver, host_view("tail -n +2 /proc/sysvipc/shm | wc -l"))
    assert out.strip() == "0"  # it died with the first container's IPC namespace


def test_proc_dev_and_sys(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    script = (
        "ls /dev | tr '\\n' ' '; echo; test -c /dev/null && echo null-ok; "
        "grep -E ' /(proc|sys|dev/pts|dev/shm|dev/mqueue) ' /proc/mounts | cut -d' ' -f2,3,4 | cut -d, -f1; "
        "touch /sys/x 2>/dev/null || echo sys-ro"
    )
    status, out, err = run(driver, shell(cid, busybox_rootfs, script))
    assert status.exit_code == 0, err
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "ptmx"} <= set(
        out.split("\n")[0].split()
    )
    assert "null-ok" in out and "sys-ro" in out
    assert "/proc proc rw" in out and "/sys sysfs ro" in out
    for mount in ("/dev/pts devpts", "/dev/shm tmpfs", "/dev/mqueue mqueue"):
        assert mount in out


def test_rootfs_is_the_root_and_the_host_is_gone(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    status, out, _ = run(driver, shell(cid, busybox_rootfs, "ls /; cat /proc/self/mountinfo"))
    assert status.exit_code == 0
    assert "/work" not in out and str(busybox_rootfs) not in out.split("\n")[0]
    assert "bin" in out.split()


# -- mounts ----------------------------------------------------------------


def test_mounts_read_only_and_writable(driver: NativeDriver, busybox_rootfs: Path, tmp_path: Path,
                                       cid: str) -> None:
    writable, readonly = tmp_path / "rw", tmp_path / "ro"
    writable.mkdir()
    readonly.mkdir()
    (readonly / "file").write_text("data")
    mounts = [Mount(str(writable), "/mnt/rw", True), Mount(str(readonly), "/mnt/ro", False)]
    script = (
        "echo hi > /mnt/rw/new && echo rw-ok; cat /mnt/ro/file; echo; "
        "echo x > /mnt/ro/new 2>/dev/null || echo ro-refused"
    )
    status, out, err = run(driver, shell(cid, busybox_rootfs, script, mounts=mounts))
    assert status.exit_code == 0, err
    assert "rw-ok" in out and "data" in out and "ro-refused" in out
    assert (writable / "new").read_text() == "hi\n"
    assert not (readonly / "new").exists()


def test_file_bind_mount(driver: NativeDriver, busybox_rootfs: Path, tmp_path: Path, cid: str) -> None:
    source = tmp_path / "config.txt"
    source.write_text("setting=1\n")
    mounts = [Mount(str(source), "/etc/app.conf", False)]
    status, out, _ = run(driver, shell(cid, busybox_rootfs, "cat /etc/app.conf", mounts=mounts))
    assert status.exit_code == 0 and out == "setting=1\n"


def test_readonly_rootfs(driver: NativeDriver, rootfs: Path, cid: str) -> None:
    script = "touch /x 2>/dev/null && echo wrote || echo refused; touch /dev/shm/y && echo shm-ok"
    status, out, _ = run(driver, shell(cid, rootfs, script, readonly_rootfs=True))
    assert status.exit_code == 0
    assert "refused" in out and "shm-ok" in out
    assert not (rootfs / "x").exists()


def test_symlinked_mount_destination_stays_in_rootfs(driver: NativeDriver, rootfs: Path, tmp_path: Path,
                                                     cid: str) -> None:
    # A destination through a symlink that points at a host path must land
    # inside the rootfs, never on the host (the CVE-2021-30465 class).
    outside = tmp_path / "host-target"
    outside.mkdir()
    (rootfs / "escape").symlink_to(outside)
    source = tmp_path / "vol"
    source.mkdir()
    (source / "marker").write_text("m")
    mounts = [Mount(str(source), "/escape", False)]
    status, out, err = run(driver, shell(cid, rootfs, "cat /escape/marker", mounts=mounts))
    assert status.exit_code == 0, err
    assert out == "m"
    assert list(outside.iterdir()) == []
    assert (rootfs / str(outside).lstrip("/")).is_dir()  # created inside the rootfs instead


def test_overlay_from_layers(driver: NativeDriver, busybox_rootfs: Path, tmp_path: Path, cid: str) -> None:
    top = tmp_path / "top"
    (top / "etc").mkdir(parents=True)
    (top / "etc" / "motd").write_text("from the top layer\n")
    folder = tmp_path / "rw-layer"
    folder.mkdir()
    command = Command(
        id=cid,
        layer_paths=[str(top), str(busybox_rootfs)],
        layer_folder=str(folder),
        process_config=ProcessConfig(entrypoint="sh", arguments=["-c", "cat /etc/motd; echo new > /created"]),
    )
    status, out, err = run(driver, command)
    assert status.exit_code == 0, err
    assert out == "from the top layer\n"
    assert (folder / "diff" / "created").read_text() == "new\n"
    assert not (busybox_rootfs / "created").exists()


def test_host_view_rootfs(driver: NativeDriver, cid: str) -> None:
    script = (
        "test -x /bin/sh && echo host-sh; touch /usr/x 2>/dev/null || echo usr-ro; "
        "echo t > /tmp/t && echo tmp-rw; ls -A /run | wc -l; echo $$"
    )
    command = Command(id=cid, rootfs="/", readonly_rootfs=True,
                      process_config=ProcessConfig(entrypoint="/bin/sh", arguments=["-c", script]))
    status, out, err = run(driver, command)
    assert status.exit_code == 0, err
    assert out.split() == ["host-sh", "usr-ro", "tmp-rw", "0", "1"]


# -- process: environment, user, working directory, stdio -------------------


def test_environment_user_and_working_dir(driver: NativeDriver, rootfs: Path, cid: str) -> None:
    config = ProcessConfig(
        entrypoint="sh",
        arguments=["-c", "echo $GREETING; id -u; id -g; id -G; pwd; echo $HOME; echo $PATH"],
        env=["GREETING=hello"],
        user="alice",
    )
    status, out, err = run(driver, Command(id=cid, rootfs=str(rootfs), working_dir="/work/dir",
                                           process_config=config))
    assert status.exit_code == 0, err
    assert out.split("\n")[:6] == ["hello", "1000", "1000", "1000 50", "/work/dir", "/home/alice"]
    assert "/usr/bin" in out.split("\n")[6]


def test_numeric_user_and_group(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    config = ProcessConfig(entrypoint="sh", arguments=["-c", "id -u; id -g"], user="4242:4343")
    status, out, _ = run(driver, Command(id=cid, rootfs=str(busybox_rootfs), process_config=config))
    assert status.exit_code == 0 and out.split() == ["4242", "4343"]


def test_supplementary_groups_as_docker_sets_them(driver: NativeDriver, rootfs: Path, cid: str) -> None:
    # Docker's (and runc's) rule: a user alone brings every group that lists
    # it as a member; a user with a group brings that group and no other.
    (rootfs / "etc" / "group").write_text("root:x:0:root\nwheel:x:10:root,alice\nalice:x:1000:\nstaff:x:50:alice\n")

    def groups(index: int, user: str) -> list[int]:
        config = ProcessConfig(entrypoint="sh", arguments=["-c", "grep ^Groups: /proc/self/status"], user=user)
        status, out, err = run(driver, Command(id=f"{cid}-{index}", rootfs=str(rootfs), process_config=config))
        assert status.exit_code == 0, err
        return [int(gid) for gid in out.split()[1:]]

    assert groups(0, "") == [0, 10]  # the default user, root: Alpine's root is in a dozen such groups
    assert groups(1, "alice") == [10, 50]
    assert groups(2, "alice:staff") == []
    assert groups(3, "1000:1000") == []
    assert groups(4, "4242") == []  # in no passwd entry: no name, so no memberships


def test_stdin_from_bytes(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    data = os.urandom(300_000)
    status, out, _ = run(driver, shell(cid, busybox_rootfs, "wc -c"), stdin=data)
    assert status.exit_code == 0 and out.strip() == str(len(data))


def test_large_output_on_both_streams(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    size = 10 * 1024 * 1024
    script = f"head -c {size} /dev/zero | tr '\\0' a >&2 & head -c {size} /dev/zero | tr '\\0' b; wait"
    status, out, err = run(driver, shell(cid, busybox_rootfs, script))
    assert status.exit_code == 0
    assert len(out) == size and set(out) == {"b"}
    assert len(err) == size and set(err) == {"a"}


def test_real_file_descriptors_are_handed_over(driver: NativeDriver, busybox_rootfs: Path, tmp_path: Path,
                                               cid: str) -> None:
    target = tmp_path / "out.txt"
    with open(target, "wb") as handle:
        status = driver.run(shell(cid, busybox_rootfs, "echo direct; ls -l /proc/self/fd/1"),
                            Pipes(stdout=handle))
    assert status.exit_code == 0
    text = target.read_text()
    assert text.startswith("direct\n")


def test_no_host_descriptor_reaches_the_container(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    leak_r, leak_w = os.pipe()
    os.set_inheritable(leak_w, True)  # even an inheritable descriptor must not get through
    try:
        status, out, _ = run(driver, shell(cid, busybox_rootfs, "ls /proc/self/fd | sort -n | tr '\\n' ' '"))
    finally:
        os.close(leak_r)
        os.close(leak_w)
    assert status.exit_code == 0
    assert out.split() == ["0", "1", "2", "3"]  # 3 is ls's own directory handle


# -- exit codes and signals ---------------------------------------------------


@pytest.mark.parametrize("code", [0, 1, 7, 255])
def test_exit_codes(driver: NativeDriver, busybox_rootfs: Path, cid: str, code: int) -> None:
    status, _, _ = run(driver, shell(cid, busybox_rootfs, f"exit {code}"))
    assert status.exit_code == code


def test_killed_by_signal_is_128_plus_signal(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    thread, result = start_in_background(driver, shell(cid, busybox_rootfs, "sleep 60"))
    driver.kill(Command(id=cid), signal.SIGKILL)
    thread.join(10)
    assert result["status"].exit_code == 137  # type: ignore[attr-defined]


def test_signal_with_a_handler(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    script = "trap 'exit 42' USR1; echo ready > /dev/null; while true; do sleep 0.05; done"
    thread, result = start_in_background(driver, shell(cid, busybox_rootfs, script))
    time.sleep(0.2)  # let sh install its trap
    driver.kill(Command(id=cid), signal.SIGUSR1)
    thread.join(10)
    assert result["status"].exit_code == 42  # type: ignore[attr-defined]


def test_terminate_and_not_running(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    thread, result = start_in_background(driver, shell(cid, busybox_rootfs, "sleep 60"))
    pid = int(result["pid"])  # type: ignore[call-overload]
    driver.terminate(Command(id=cid))
    thread.join(10)
    assert result["status"].exit_code == 137  # type: ignore[attr-defined]
    assert not process.is_alive(pid, process.start_time(pid) or -1)
    with pytest.raises(NotRunningError):
        driver.terminate(Command(id=cid))
    with pytest.raises(NotRunningError):
        driver.kill(Command(id=cid), signal.SIGTERM)


# -- hooks -----------------------------------------------------------------


def test_hooks_order_and_pid(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    events: list[tuple[str, int, str]] = []

    def exe(pid: int) -> str:
        try:
            return os.readlink(f"/proc/{pid}/exe")
        except OSError:
            return "gone"

    def hook(name: str):  # type: ignore[no-untyped-def]
        def callback(config: ProcessConfig, pid: int, oom: OOMEvents) -> None:
            assert isinstance(oom, OOMEvents)
            assert config.entrypoint == "sleep"
            events.append((name, pid, exe(pid)))
        return callback

    hooks = Hooks(pre_start=[hook("pre1"), hook("pre2")], start=hook("start"), post_stop=[hook("post")])
    command = Command(id=cid, rootfs=str(busybox_rootfs),
                      process_config=ProcessConfig(entrypoint="sleep", arguments=["0.1"]))
    status, _, _ = run(driver, command, hooks=hooks)
    assert status.exit_code == 0
    assert [e[0] for e in events] == ["pre1", "pre2", "start", "post"]
    assert {e[1] for e in events} == {command.container_pid}
    # Before the start the init is still the runtime, not yet the user's program.
    assert "busybox" not in events[0][2] and "python" in events[0][2]
    assert events[2][2].endswith("busybox")
    assert events[3][2] == "gone"


@pytest.mark.parametrize("stage", ["pre_start", "start"])
def test_a_failing_hook_aborts_and_cleans(driver: NativeDriver, busybox_rootfs: Path, state_root: Path,
                                          cid: str, stage: str) -> None:
    seen: list[int] = []

    def boom(_config: ProcessConfig, pid: int, _oom: OOMEvents) -> None:
        seen.append(pid)
        raise RuntimeError("hook failed")

    hooks = Hooks(pre_start=[boom]) if stage == "pre_start" else Hooks(start=boom)
    with pytest.raises(RuntimeError, match="hook failed"):
        run(driver, shell(cid, busybox_rootfs, "sleep 60"), hooks=hooks)
    assert not os.path.exists(f"/proc/{seen[0]}") or process.is_zombie(seen[0])
    assert not (state_root / cid).exists()


def test_post_stop_errors_reach_the_caller_after_all_ran(driver: NativeDriver, busybox_rootfs: Path,
                                                          cid: str) -> None:
    ran: list[str] = []

    def failing(_c: ProcessConfig, _p: int, _o: OOMEvents) -> None:
        ran.append("failing")
        raise ValueError("post failed")

    def second(_c: ProcessConfig, _p: int, _o: OOMEvents) -> None:
        ran.append("second")

    with pytest.raises(ValueError, match="post failed"):
        run(driver, shell(cid, busybox_rootfs, "true"), hooks=Hooks(post_stop=[failing, second]))
    assert ran == ["failing", "second"]


# -- pids, clean, state ------------------------------------------------------


def test_pids_of_a_multi_process_container(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    script = "sleep 60 & sleep 61 & sh -c 'sleep 62; true' & wait"
    thread, result = start_in_background(driver, shell(cid, busybox_rootfs, script))
    init_pid = int(result["pid"])  # type: ignore[call-overload]
    try:
        wait_for(lambda: len(driver.get_pids_for_container(cid)) >= 5)
        pids = driver.get_pids_for_container(cid)
        assert init_pid in pids
        names = sorted(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode() for pid in pids)
        assert names.count("sleep") == 3 and len(pids) == 5
    finally:
        driver.terminate(Command(id=cid))
        thread.join(10)
    with pytest.raises(NotRunningError):
        driver.get_pids_for_container(cid)


def test_clean_removes_every_trace(driver: NativeDriver, busybox_rootfs: Path, state_root: Path,
                                   cid: str) -> None:
    thread, result = start_in_background(driver, shell(cid, busybox_rootfs, "sleep 60 & sleep 60"))
    pids = driver.get_pids_for_container(cid)
    assert (state_root / cid / "state.json").exists()
    driver.clean(cid)
    thread.join(30)  # (an emulated guest takes seconds)
    assert not thread.is_alive(), "run() did not return after clean"
    assert result["status"].exit_code == 137  # type: ignore[attr-defined]
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or process.is_zombie(pid)
    assert not (state_root / cid).exists()
    driver.clean(cid)  # cleaning twice is fine


def test_a_busy_id_is_refused(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    thread, _ = start_in_background(driver, shell(cid, busybox_rootfs, "sleep 60"))
    try:
        with pytest.raises(ContainerExistsError, match=f"container id {cid} is already in use"):
            run(driver, shell(cid, busybox_rootfs, "true"))
    finally:
        driver.terminate(Command(id=cid))
        thread.join(10)
    status, _, _ = run(driver, shell(cid, busybox_rootfs, "true"))  # free again
    assert status.exit_code == 0


def test_an_id_claimed_by_a_live_creator_is_refused_and_freed_when_it_dies(
        driver: NativeDriver, busybox_rootfs: Path, state_root: Path, cid: str) -> None:
    # The creator stops between its claim and the first write of its state,
    # where a start waits for the fork server's answer.
    program = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
from execdriver.native.state import StateStore
StateStore({str(state_root)!r}).create({cid!r}, "/")
print("claimed", flush=True)
sys.stdin.read()
"""
    creator = subprocess.Popen([sys.executable, "-c", program], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    try:
        assert creator.stdout is not None and creator.stdout.readline() == "claimed\n"
        assert not (state_root / cid / "state.json").exists()
        with pytest.raises(ContainerExistsError, match=f"container id {cid} is already in use"):
            run(driver, shell(cid, busybox_rootfs, "true"))
        assert (state_root / cid).is_dir()  # the refused start took nothing of the claim's
    finally:
        creator.kill()
        creator.wait(10)
    status, _, _ = run(driver, shell(cid, busybox_rootfs, "true"))  # a dead creator's claim is stale
    assert status.exit_code == 0
    assert not (state_root / cid).exists()


def test_another_process_can_see_and_kill_the_container(driver: NativeDriver, busybox_rootfs: Path,
                                                        state_root: Path, cid: str) -> None:
    thread, result = start_in_background(driver, shell(cid, busybox_rootfs, "sleep 60 & sleep 61; true"))
    wait_for(lambda: len(driver.get_pids_for_container(cid)) == 3)
    program = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
from execdriver import Command
from execdriver.native.driver import NativeDriver
other = NativeDriver(root={str(state_root)!r})
pids = other.get_pids_for_container({cid!r})
print(json.dumps({{"ids": other.list(), "pids": pids}}))
other.kill(Command(id={cid!r}), 9)
"""
    seen = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=30, check=True)
    report = json.loads(seen.stdout)
    thread.join(10)
    assert cid in report["ids"]
    assert result["pid"] in report["pids"] and len(report["pids"]) == 3
    assert result["status"].exit_code == 137  # type: ignore[attr-defined]


def test_container_pid_is_set(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    command = shell(cid, busybox_rootfs, "true")
    run(driver, command)
    assert command.container_pid > 0


# -- concurrency --------------------------------------------------------------


def test_twenty_containers_from_four_threads(driver: NativeDriver, busybox_rootfs: Path) -> None:
    results: dict[str, tuple[int, str]] = {}
    errors: list[BaseException] = []

    def worker(worker_id: int) -> None:
        for n in range(5):
            name = f"t-conc-{os.getpid()}-{worker_id}-{n}"
            try:
                status, out, _ = run(driver, shell(name, busybox_rootfs, f"echo {name}; exit {n}",
                                                   hostname=name[-20:]))
                results[name] = (status.exit_code, out.strip())
            except BaseException as err:  # noqa: BLE001 - collected for the assertion
                errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(results) == 20
    for name, (code, out) in results.items():
        assert out == name and code == int(name.rsplit("-", 1)[1])


# -- capabilities -------------------------------------------------------------


def _capability_masks(status_text: str) -> dict[str, int]:
    return {line.split(":")[0]: int(line.split()[1], 16) for line in status_text.split("\n")
            if line.startswith("Cap")}


def test_root_keeps_only_the_default_capabilities(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    from execdriver.linux import capabilities

    script = "cat /proc/self/status; mount -t tmpfs none /mnt 2>&1 && echo mounted || echo mount-refused"
    status, out, _ = run(driver, shell(cid, busybox_rootfs, script))
    assert status.exit_code == 0
    masks = _capability_masks(out)
    docker = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
              "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE")  # Docker's 14
    expected = sum(1 << capabilities.NUMBERS[f"CAP_{name}"] for name in docker)
    assert masks["CapBnd"] == expected and masks["CapEff"] == expected and masks["CapPrm"] == expected
    assert masks["CapInh"] == 0 and masks["CapAmb"] == 0
    assert "mount-refused" in out


def test_a_node_of_the_hosts_disk_can_be_made_but_not_opened(driver: NativeDriver, busybox_rootfs: Path,
                                                              cid: str) -> None:
    # CAP_MKNOD is Docker's, and the devices cgroup (v1's files, v2's eBPF
    # program) is what keeps the node shut; a privileged container opens it.
    major, minor = openable_block_device()
    script = (f"mknod /dev/disk b {major} {minor} && echo made; "
              "(: </dev/disk) 2>/dev/null && echo opened || echo refused")
    _, out, _ = run(driver, shell(cid, busybox_rootfs, script))
    assert out.split() == ["made", "refused"]
    privileged = ProcessConfig(entrypoint="sh", arguments=["-c", script], privileged=True)
    _, out, _ = run(driver, shell(f"{cid}-privileged", busybox_rootfs, script, process_config=privileged))
    assert out.split() == ["made", "opened"]


def test_a_non_root_user_has_no_capabilities(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    config = ProcessConfig(entrypoint="cat", arguments=["/proc/self/status"], user="nobody")
    status, out, _ = run(driver, Command(id=cid, rootfs=str(busybox_rootfs), process_config=config))
    masks = _capability_masks(out)
    assert status.exit_code == 0 and masks["CapEff"] == 0 and masks["CapPrm"] == 0


def test_privileged_keeps_every_capability(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    script = "grep CapEff /proc/self/status; mount -t tmpfs none /tmp && echo mounted"
    config = ProcessConfig(entrypoint="sh", arguments=["-c", script], privileged=True)
    status, out, _ = run(driver, Command(id=cid, rootfs=str(busybox_rootfs), process_config=config))
    assert status.exit_code == 0 and "mounted" in out
    ours = next(line for line in Path("/proc/self/status").read_text().split("\n") if line.startswith("CapPrm"))
    assert int(out.split()[1], 16) == int(ours.split()[1], 16)  # all the host's caps


def test_fork_server_survives_a_dead_blank(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    # The fork server keeps an init cloned ahead of time; if it dies before
    # use, the next run must still start.
    run(driver, shell(cid, busybox_rootfs, "true"))
    server = driver._spawner._process  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    blanks: list[int] = []
    while not blanks:
        assert time.monotonic() < deadline, "no blank init appeared"
        blanks = [int(name) for name in os.listdir("/proc") if name.isdigit()
                  and process.parent(int(name)) == server.pid]
        time.sleep(0.01)
    for pid in blanks:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: all(process.is_zombie(pid) for pid in blanks))
    status, out, _ = run(driver, shell(cid, busybox_rootfs, "echo again"))
    assert status.exit_code == 0 and out == "again\n"


def test_a_rootfs_mounted_after_the_blank_was_cloned(driver: NativeDriver, busybox_rootfs: Path,
                                                     tmp_path: Path, cid: str) -> None:
    # Engines mount the rootfs (containerd's overlay) just before the start:
    # the fork server's blank init, cloned earlier, must still see it.
    run(driver, shell(cid, busybox_rootfs, "true"))  # the server now holds a blank
    mount_point = tmp_path / "fresh-rootfs"
    mount_point.mkdir()
    volume = tmp_path / "fresh-volume"
    volume.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mount_point)], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(volume)], check=True)
    try:
        subprocess.run(["cp", "-a", f"{busybox_rootfs}/.", str(mount_point)], check=True)
        (mount_point / "marker").write_text("fresh")
        (volume / "data").write_text("volume")
        mounts = [Mount(str(volume), "/vol", False)]
        status, out, err = run(driver, shell(cid, mount_point, "cat /marker /vol/data", mounts=mounts))
        assert status.exit_code == 0, err
        assert out == "freshvolume"
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)
        subprocess.run(["umount", str(volume)], check=True)


def test_swapped_standard_streams(busybox_rootfs: Path, state_root: Path, cid: str) -> None:
    # The caller's own descriptors 1 and 2, handed over crosswise.
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            with NativeDriver(root=str(state_root), fork_server=False) as direct:
                stdout, stderr = os.fdopen(2, "wb", closefd=False), os.fdopen(1, "wb", closefd=False)
                status = direct.run(shell(cid, busybox_rootfs, "echo to-out; echo to-err >&2"),
                                    Pipes(stdout=stdout, stderr=stderr))
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        out.seek(0)
        err.seek(0)
        assert status.exit_code == 0
        assert (out.read(), err.read()) == (b"to-err\n", b"to-out\n")


def test_docker_masked_and_read_only_paths(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    script = (
        "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; "
        "echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo sys-rw || echo sys-ro; "
        "echo h > /proc/sysrq-trigger 2>/dev/null && echo trigger-rw || echo trigger-ro"
    )
    status, out, _ = run(driver, shell(cid, busybox_rootfs, script))
    assert status.exit_code == 0
    assert out.split() == ["0", "0", "sys-ro", "trigger-ro"]
    script = "[ $(wc -c < /proc/timer_list) -gt 0 ] && echo visible"
    privileged = ProcessConfig(entrypoint="sh", arguments=["-c", script], privileged=True)
    status, out, _ = run(driver, Command(id=cid, rootfs=str(busybox_rootfs), process_config=privileged))
    assert out.strip() == "visible"


def test_only_the_standard_devices_open_unless_privileged(driver: NativeDriver, busybox_rootfs: Path,
                                                          cid: str) -> None:
    # The devices cgroup keeps a container off the host's disks even where
    # it can make their nodes; read from the host while the container runs.
    # (On v2 there is no list: a_node_of_the_hosts_disk above tries the opens.)
    if cgroups.version() == 2:
        pytest.skip("devices.list is v1's; on v2 the program's verdicts are tried by the tests around this one")
    listed: list[list[str]] = []

    def on_start(_config: Any, _pid: int, _oom: Any) -> None:
        path = Path(hierarchies()["devices"]) / "execdriver" / cid / "devices.list"
        listed.append(path.read_text().splitlines())

    for privileged in (False, True):
        config = ProcessConfig(entrypoint="true", privileged=privileged)
        command = Command(id=cid, rootfs=str(busybox_rootfs), process_config=config)
        assert driver.run(command, Pipes(), Hooks(start=on_start)).exit_code == 0
    unprivileged, privileged_list = listed
    assert "c 1:3 rwm" in unprivileged and "c 136:* rwm" in unprivileged and "b 7:0 rwm" not in unprivileged
    assert "a *:* rwm" not in unprivileged
    assert privileged_list == ["a *:* rwm"]


# -- the id directories a driver keeps (StateStore spares) -------------------------


def _spares(root: Path) -> list[str]:
    return sorted(name for name in os.listdir(root) if name.startswith(".spare-")) if root.exists() else []


def test_a_start_reuses_the_directory_the_last_one_left_and_close_removes_it(
        busybox_rootfs: Path, state_root: Path) -> None:
    with NativeDriver(root=str(state_root)) as native:
        first, second = f"s-{uuid.uuid4().hex[:10]}", f"s-{uuid.uuid4().hex[:10]}"
        run(native, shell(first, busybox_rootfs, "true"))
        kept = _spares(state_root)
        assert kept and not (state_root / first).exists()
        inode = os.stat(state_root / kept[0]).st_ino
        seen: dict[str, Any] = {}

        def look(_config: object, pid: int, _oom: object) -> None:
            seen["inode"] = os.stat(state_root / second).st_ino
            seen["state"] = json.loads((state_root / second / "state.json").read_text())

        status, _, _ = run(native, shell(second, busybox_rootfs, "true"), hooks=Hooks(pre_start=[look]))
        assert status.exit_code == 0
        assert seen["inode"] == inode  # the kept directory, renamed to the new id
        assert seen["state"]["id"] == second and seen["state"]["pid"] > 0  # its old state rewritten
        assert native.list() == []
    assert _spares(state_root) == []


_KILLED = """
import os, sys
sys.path.insert(0, {root!r})
from execdriver import Command, Pipes, ProcessConfig
from execdriver.native.driver import NativeDriver
driver = NativeDriver(root={state!r}, fork_server={fork_server!r})
driver.run(Command(id="k-1", rootfs={rootfs!r}, process_config=ProcessConfig(entrypoint="true")), Pipes())
print(" ".join(sorted(os.listdir({state!r}))), flush=True)
os.kill(os.getpid(), 9)
"""


@pytest.mark.parametrize("fork_server", [True, False])
def test_the_directories_a_killed_program_kept_are_removed(fork_server: bool, busybox_rootfs: Path,
                                                          state_root: Path) -> None:
    script = _KILLED.format(root=str(Path(__file__).parent.parent), state=str(state_root),
                            fork_server=fork_server, rootfs=str(busybox_rootfs))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert any(name.startswith(".spare-") for name in result.stdout.split())
    if fork_server:  # its fork server sees the program go, and sweeps what it kept
        wait_for(lambda: _spares(state_root) == [])
    else:  # the next driver to close on this root does
        assert _spares(state_root)
        NativeDriver(root=str(state_root), fork_server=False).close()
        assert _spares(state_root) == []


def test_two_drivers_of_one_program_keep_their_directories_apart(busybox_rootfs: Path, state_root: Path) -> None:
    first, second = NativeDriver(root=str(state_root)), NativeDriver(root=str(state_root))
    try:
        for round_ in range(3):
            for index, native in enumerate((first, second)):
                status, out, _ = run(native, shell(f"two-{round_}-{index}", busybox_rootfs, "echo $((6 * 7))"))
                assert status.exit_code == 0 and out == "42\n"
        assert len(_spares(state_root)) == 2  # one kept by each, under names of their own
    finally:
        first.close()
        second.close()
    assert _spares(state_root) == []


def test_a_fork_of_the_program_leaves_the_drivers_directories_alone(driver: NativeDriver, busybox_rootfs: Path,
                                                                    state_root: Path) -> None:
    run(driver, shell(f"f-{uuid.uuid4().hex[:10]}", busybox_rootfs, "true"))
    kept = _spares(state_root)
    assert kept
    child = os.fork()
    if child == 0:  # as a fork's atexit would: the store it copied closes
        try:
            driver._store.close()
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    assert _spares(state_root) == kept
