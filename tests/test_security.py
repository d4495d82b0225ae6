"""Security: capabilities, seccomp, process attributes, masked paths, and attackers of the runc CVE classes.

Each CVE-class test runs what an attacker would inside the container and
fails on a runtime that lets it through.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from execdriver import Command, ConfigError, ContainerError, Hooks, Pipes, ProcessConfig, Resources, Rlimit
from execdriver.linux import capabilities
from execdriver.native.driver import NativeDriver
from tests.helpers import run, shell
from tests.test_oci import Runtime, bundle, runtime  # noqa: F401 - fixtures
from tests.test_run import start_in_background

# Python for the tests that call system calls directly: the host view (rootfs "/") has the host's python3.
SYSCALL = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def call(name, *args):
    result = getattr(libc, name)(*args)
    print(name, "ok" if result >= 0 else os.strerror(ctypes.get_errno()))
call("unshare", 0x04000000)               # CLONE_NEWUTS
call("syscall", 250, 0, 0, 0, 0, 0)       # keyctl(KEYCTL_GET_KEYRING_ID)
call("mount", b"none", b"/tmp", b"tmpfs", 0, None)
"""


def _masks(status_text: str) -> dict[str, int]:
    return {line.split(":")[0]: int(line.split()[1], 16) for line in status_text.splitlines()
            if line.startswith("Cap")}


def _mask(*names: str) -> int:
    return sum(1 << capabilities.NUMBERS[f"CAP_{name}"] for name in names)


def _status(driver: NativeDriver, busybox_rootfs: Path, cid: str, **fields: Any) -> str:
    status, out, err = run(driver, shell(cid, busybox_rootfs, "cat /proc/self/status", **fields))
    assert status.exit_code == 0, err
    return out


# -- capabilities ---------------------------------------------------------------------


def test_cap_add_and_cap_drop_change_dockers_set(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    masks = _masks(_status(driver, busybox_rootfs, cid, cap_add=["NET_ADMIN"], cap_drop=["CAP_CHOWN", "mknod"]))
    docker = _mask("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
                   "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE")
    wanted = (docker | _mask("NET_ADMIN")) & ~_mask("CHOWN", "MKNOD")
    assert masks["CapEff"] == masks["CapPrm"] == masks["CapBnd"] == wanted
    assert masks["CapInh"] == 0 and masks["CapAmb"] == 0  # never inheritable unless asked (CVE-2022-29162)


def test_drop_all_then_add_one(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    masks = _masks(_status(driver, busybox_rootfs, cid, cap_drop=["ALL"], cap_add=["NET_BIND_SERVICE"]))
    assert masks["CapEff"] == masks["CapBnd"] == _mask("NET_BIND_SERVICE")


def test_an_unknown_capability_is_named(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    with pytest.raises(ConfigError, match=r"cap_add\[1\]: unknown capability 'CAP_FLY'"):
        run(driver, shell(cid, busybox_rootfs, "true", cap_add=["NET_ADMIN", "CAP_FLY"]))
    assert driver.list() == []


# -- seccomp ----------------------------------------------------------------------------


def _syscalls(driver: NativeDriver, cid: str, **fields: Any) -> list[str]:
    command = Command(id=cid, rootfs="/", process_config=ProcessConfig(entrypoint="python3",
                                                                       arguments=["-I", "-c", SYSCALL]), **fields)
    status, out, err = run(driver, command)
    assert status.exit_code == 0, err
    return out.splitlines()


def test_dockers_default_profile_denies_with_eperm(driver: NativeDriver, cid: str) -> None:
    assert _syscalls(driver, cid) == ["unshare Operation not permitted", "syscall Operation not permitted",
                                      "mount Operation not permitted"]
    # CAP_SYS_ADMIN opens what the profile gates on it (as in Docker); keyctl stays shut.
    assert _syscalls(driver, cid, cap_add=["SYS_ADMIN"]) == [
        "unshare ok", "syscall Operation not permitted", "mount ok"]


def test_unconfined_and_privileged_have_no_filter(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    assert "Seccomp:\t2" in _status(driver, busybox_rootfs, cid)
    assert "Seccomp:\t0" in _status(driver, busybox_rootfs, cid, seccomp_profile="unconfined")
    privileged = ProcessConfig(entrypoint="cat", arguments=["/proc/self/status"], privileged=True)
    _, out, _ = run(driver, Command(id=cid, rootfs=str(busybox_rootfs), process_config=privileged))
    assert "Seccomp:\t0" in out


def test_a_custom_profile_in_dockers_format(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    profile = json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": []}],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            # Only for a container without CAP_NET_ADMIN: this one has it, so rmdir stays allowed.
            {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "excludes": {"caps": ["CAP_NET_ADMIN"]}},
        ],
    })
    script = "mkdir /tmp/a 2>&1; mkdir -p /tmp; rmdir /tmp/b 2>&1; echo end"
    status, out, _ = run(driver, shell(cid, busybox_rootfs, script, seccomp_profile=profile, cap_add=["NET_ADMIN"]))
    assert status.exit_code == 0
    assert "mkdir: can't create directory '/tmp/a': Permission denied" in out
    assert "rmdir: '/tmp/b': No such file or directory" in out


def test_a_profile_that_is_not_json_is_refused(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    with pytest.raises(ConfigError, match="seccomp_profile: not a JSON profile"):
        run(driver, shell(cid, busybox_rootfs, "true", seccomp_profile="{nope"))
    with pytest.raises(ConfigError, match="unknown action 'SCMP_ACT_FLY'"):
        run(driver, shell(cid, busybox_rootfs, "true", seccomp_profile='{"defaultAction": "SCMP_ACT_FLY"}'))


# -- process attributes -----------------------------------------------------------------


def test_no_new_privileges_rlimits_oom_score_adj_and_umask(driver: NativeDriver, busybox_rootfs: Path,
                                                           cid: str) -> None:
    import resource

    script = "grep NoNewPrivs /proc/self/status; ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj; umask"
    command = shell(cid, busybox_rootfs, script, no_new_privileges=True, oom_score_adj=500, umask=0o027,
                    resources=Resources(rlimits=[Rlimit(type=resource.RLIMIT_NOFILE, soft=123, hard=456)]))
    status, out, _ = run(driver, command)
    assert status.exit_code == 0
    assert out.split() == ["NoNewPrivs:", "1", "123", "456", "500", "0027"]
    status, out, _ = run(driver, shell(cid, busybox_rootfs, "grep NoNewPrivs /proc/self/status; umask"))
    assert out.split() == ["NoNewPrivs:", "0", "0022"]


def test_apparmor_is_applied_or_refused(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    enabled = Path("/sys/module/apparmor/parameters/enabled")
    command = shell(cid, busybox_rootfs, "cat /proc/self/attr/current", apparmor_profile="unconfined")
    if enabled.exists() and enabled.read_text().strip() == "Y":
        status, out, _ = run(driver, command)
        assert status.exit_code == 0 and out.strip() == "unconfined"
    else:
        with pytest.raises(ConfigError, match="apparmor_profile: AppArmor is not enabled on this host"):
            run(driver, command)


# -- masked and read-only paths -----------------------------------------------------------


def test_masked_and_read_only_paths_are_configurable(driver: NativeDriver, rootfs: Path, cid: str) -> None:
    (rootfs / "srv").mkdir()
    (rootfs / "srv" / "secret").write_text("s3cret\n")
    (rootfs / "opt").mkdir()
    (rootfs / "opt" / "key").write_text("key\n")
    (rootfs / "tmp" / "ro").mkdir()
    script = ("wc -c < /srv/secret; ls /opt | wc -l; "
              "echo data > /tmp/ro/file 2>/dev/null && echo ro-rw || echo ro-refused; "
              "echo data > /tmp/file && echo tmp-rw; wc -c < /proc/timer_list")
    command = shell(cid, rootfs, script, masked_paths=["/srv/secret", "/opt"], readonly_paths=["/tmp/ro"])
    status, out, _ = run(driver, command)
    assert status.exit_code == 0
    secret, listing, readonly, writable, timer_list = out.split()
    assert (secret, listing, readonly, writable) == ("0", "0", "ro-refused", "tmp-rw")
    assert int(timer_list) > 0  # the lists given replace Docker's, which mask /proc/timer_list
    assert (rootfs / "srv" / "secret").read_text() == "s3cret\n"
    with pytest.raises(ConfigError, match=r"masked_paths\[0\]: 'relative' is not an absolute path"):
        run(driver, shell(cid, rootfs, "true", masked_paths=["relative"]))


def test_writes_to_the_kernels_interfaces_are_refused(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    tries = {
        "sysrq": "echo h > /proc/sysrq-trigger",
        "proc-sys": "echo 1 > /proc/sys/vm/drop_caches",
        "sysfs": "echo 1 > /sys/kernel/mm/ksm/run",
        "sysfs-new": "mkdir /sys/fs/cgroup/escape",
        "cgroupfs": "mount -t cgroup -o memory none /mnt",
        "cgroup2": "mount -t cgroup2 none /mnt",
        "disk": "mknod /dev/sda b 8 0 && head -c 1 /dev/sda",
        "kmem": "mknod /dev/kmem c 1 2 && head -c 1 /dev/kmem",
        "remount": "mount -o remount,rw /proc/sys",
    }
    script = "; ".join(f"({attempt}) >/dev/null 2>&1 && echo {name}:open || echo {name}:refused"
                       for name, attempt in tries.items())
    status, out, _ = run(driver, shell(cid, busybox_rootfs, script))
    assert status.exit_code == 0
    assert out.split() == [f"{name}:refused" for name in tries]


# -- the runc CVE classes -----------------------------------------------------------------

# Every process that is not the container's own busybox, as the container sees it: the exe
# it can read, and the descriptors it can list. Run while runtime processes come and go.
WATCHER = ("while :; do for p in /proc/[0-9]*; do "
           "readlink $p/exe 2>/dev/null | grep -v busybox >> /dev/shm/exes; "
           "head -c 1 $p/exe > /dev/null 2>&1 && readlink $p/exe | grep -qv busybox && echo $p >> /dev/shm/exes; "
           "ls -l $p/fd 2>/dev/null | grep -v -e busybox -e null -e pipe -e socket -e '^total' >> /dev/shm/fds; "
           "done; done")


def test_cve_2019_5736_exec_exposes_no_runtime(driver: NativeDriver, busybox_rootfs: Path, cid: str) -> None:
    """The host interpreter, inside the container before its exec, is not there to open (nor its descriptors)."""
    command = shell(cid, busybox_rootfs, WATCHER)
    thread, result = start_in_background(driver, command)
    try:
        for _ in range(40):
            assert driver.exec(command, ProcessConfig(entrypoint="true"), Pipes()) == 0
        out = run_exec(driver, command, "cat /dev/shm/exes /dev/shm/fds 2>/dev/null")
        assert "python" not in out and "/usr" not in out and "/run" not in out and "/proc" not in out, out
    finally:
        driver.terminate(command)
        thread.join(10)
    assert "error" not in result


def run_exec(driver: NativeDriver, command: Command, script: str) -> str:
    import io

    out = io.BytesIO()
    driver.exec(command, ProcessConfig(entrypoint="sh", arguments=["-c", script]), Pipes(stdout=out))
    return out.getvalue().decode()


def test_cve_2019_5736_a_created_containers_waiting_init(runtime: Runtime,  # noqa: F811
                                                         bundle: Callable[..., Path], cid: str) -> None:  # noqa: F811
    """Between create and start the init is the runtime's interpreter: an exec'd attacker cannot reach it."""
    runtime("create", "--bundle", str(bundle(["true"])), cid)
    script = ("readlink /proc/1/exe && echo exe-visible; head -c1 /proc/1/exe >/dev/null 2>&1 && echo exe-open; "
              "for fd in /proc/1/fd/*; do readlink $fd && echo fd-visible; "
              "head -c1 $fd >/dev/null 2>&1 && echo fd-open; done; "
              "cat /proc/1/environ >/dev/null 2>&1 && echo environ; head -c1 /proc/1/mem >/dev/null 2>&1 && echo mem; "
              "ls /proc/1/fd | wc -l")
    out = runtime("exec", cid, "sh", "-c", script).stdout
    assert out.split()[:-1] == [] and int(out.split()[-1]) > 0, out  # it has descriptors: none is reachable
    runtime("delete", "--force", cid)


def test_cve_2024_21626_no_host_descriptor_reaches_the_container(driver: NativeDriver, busybox_rootfs: Path,
                                                                 cid: str, tmp_path: Path) -> None:
    """Descriptors of the calling program, even inheritable ones, are closed before the container runs."""
    leaks = [os.open("/", os.O_RDONLY | os.O_DIRECTORY), os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)]
    try:
        for fd in leaks:
            os.set_inheritable(fd, True)
        status, out, _ = run(driver, shell(cid, busybox_rootfs, "ls /proc/self/fd"))
        assert status.exit_code == 0 and sorted(out.split()) == ["0", "1", "2", "3"]  # 3: ls's own directory
        for fd in leaks:
            with pytest.raises(ContainerError, match="working directory"):
                run(driver, shell(cid, busybox_rootfs, "pwd", working_dir=f"/proc/self/fd/{fd}"))
    finally:
        for fd in leaks:
            os.close(fd)


def _inheritable_fds() -> dict[int, str]:
    """This process's descriptors that a program it runs would get, and what each is."""
    import fcntl

    found = {}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC:
                found[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass  # the listing's own descriptor, closed meanwhile
    return found


@pytest.mark.parametrize("tty", [False, True], ids=["pipes", "tty"])
def test_what_the_driver_holds_while_a_container_runs_closes_on_exec(driver: NativeDriver, busybox_rootfs: Path,
                                                                    cid: str, tty: bool) -> None:
    """The init's pidfd, the fork server's reply socket, a terminal's master: none reaches a program the caller runs.

    (socket.recv_fds leaves what it receives inheritable.)
    """
    before = _inheritable_fds()
    during: dict[int, str] = {}

    def on_start(_config: ProcessConfig, _pid: int, _oom: Any) -> None:
        during.update(_inheritable_fds())

    config = ProcessConfig(entrypoint="true", tty=tty)
    status = driver.run(Command(id=cid, rootfs=str(busybox_rootfs), process_config=config), Pipes(),
                        Hooks(start=on_start))
    assert status.exit_code == 0 and during  # the hook ran (0, 1, 2 at least)
    assert {fd: what for fd, what in during.items() if before.get(fd) != what} == {}


def test_cve_2021_30465_a_swapped_mount_target_stays_in_the_rootfs(driver: NativeDriver, rootfs: Path,
                                                                  cid: str, tmp_path: Path) -> None:
    """A thread flips the mount target between a directory and symlinks out of it while containers start."""
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "marker").write_text("volume\n")
    target = rootfs / "vol" / "target"
    target.parent.mkdir()
    stop = threading.Event()

    def flip() -> None:
        aside = rootfs / "vol" / "aside"
        links = ["/proc", "/", "../../../../../..", "/etc"]
        index = 0
        while not stop.is_set():
            try:
                if target.is_symlink():
                    target.unlink()
                    target.mkdir(exist_ok=True)
                else:
                    aside.unlink(missing_ok=True)
                    aside.symlink_to(links[index % len(links)])
                    if target.is_dir():
                        target.rmdir()
                    os.rename(aside, target)
                    index += 1
            except OSError:
                pass

    from execdriver import Mount

    # Each state the flipper goes through, on its own first.
    for link, refusal in (("/proc", "it leads to /proc, where only procfs goes"),
                          ("/", "it leads to the container's root"),
                          ("../../../../../..", "it leads to the container's root")):
        os.symlink(link, target)
        with pytest.raises(ContainerError, match=refusal):
            run(driver, shell(cid, rootfs, "true", mounts=[Mount(source=str(volume), destination="/vol/target")]))
        os.unlink(target)
    flipper = threading.Thread(target=flip)
    flipper.start()
    outcomes: list[str] = []
    try:
        script = ("[ -e /proc/marker ] && echo over-proc; [ -e /marker ] && echo over-root; "
                  "[ -e /etc/marker ] && echo over-etc; grep -q ' /proc proc ' /proc/mounts || echo proc-gone; "
                  "cat /proc/self/stat >/dev/null && echo proc-real")
        for index in range(30):
            command = shell(f"{cid}-{index}", rootfs, script, mounts=[
                Mount(source=str(volume), destination="/vol/target", writable=True)])
            try:
                _, out, _ = run(driver, command)
                outcomes.append(out.strip())
            except ContainerError as err:
                outcomes.append(f"refused: {err}")
    finally:
        stop.set()
        flipper.join(10)
    for outcome in outcomes:
        # Mounted where it belongs (/vol/target or /etc inside the root), or refused: never over /proc or /.
        assert outcome in ("proc-real", "over-etc\nproc-real") or (
            outcome.startswith("refused:") and ("leads to" in outcome or "mount point" in outcome
                                                or "cannot mount" in outcome)), outcome


def test_cve_2019_16884_a_fake_proc_is_refused(driver: NativeDriver, rootfs: Path, cid: str,
                                               tmp_path: Path) -> None:
    """An image whose /proc is a symlink, or a mount over /proc, cannot stand in for procfs."""
    os.rmdir(rootfs / "proc")
    (rootfs / "fakeproc" / "self").mkdir(parents=True)
    (rootfs / "fakeproc" / "self" / "oom_score_adj").write_text("0\n")
    os.symlink("/fakeproc", rootfs / "proc")
    with pytest.raises(ContainerError, match="/proc is a symbolic link in the rootfs"):
        run(driver, shell(cid, rootfs, "true", oom_score_adj=100))
    os.unlink(rootfs / "proc")
    (rootfs / "proc").mkdir()
    from execdriver import Mount

    fake = tmp_path / "fake"
    fake.mkdir()
    for destination in ("/proc/self", "/proc/sys", "/proc"):
        with pytest.raises(ContainerError, match="only procfs goes"):
            run(driver, shell(cid, rootfs, "true", mounts=[Mount(source=str(fake), destination=destination)]))
    assert driver.list() == []
