"""User namespaces: a remapped root, exec into it, OCI mappings, and rootless containers.

The mapped host ids (200000 and up) are plain numbers: no account is
created. Rootless containers run as "nobody" (65534) through setpriv, on
directories of the test's own under /tmp (pytest's are root's alone).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from execdriver import ConfigError, IDMap, Mount, Pipes, ProcessConfig
from execdriver.native.driver import NativeDriver
from tests.helpers import run, shell
from tests.test_oci import Runtime, bundle, runtime  # noqa: F401 - fixtures
from tests.test_run import start_in_background

HOST_BASE = 200000
MAPPING = [IDMap(container_id=0, host_id=HOST_BASE, size=65536)]
NOBODY = 65534
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_remapped_root_owns_its_files_and_is_nobody_on_the_host(driver: NativeDriver, rootfs: Path,
                                                                  cid: str) -> None:
    volume = Path(tempfile.mkdtemp(prefix="execdriver-userns-"))
    try:
        volume.chmod(0o1777)
        (volume / "hosts-file").write_text("root's\n")
        pids: list[int] = []
        script = ("id -u; cat /proc/self/uid_map; stat -c %u /bin/busybox; touch /made && stat -c %u /made; "
                  "stat -c %u /vol/hosts-file; touch /vol/made-by-container; echo out > /dev/stdout; "
                  "cat /proc/self/status | grep CapEff")
        command = shell(cid, rootfs, script, uid_mapping=MAPPING, gid_mapping=MAPPING,
                        mounts=[Mount(source=str(volume), destination="/vol", writable=True)])
        from execdriver import Hooks, OOMEvents

        def on_start(_config: ProcessConfig, pid: int, _oom: OOMEvents) -> None:
            pids.append(pid)

        status, out, err = run(driver, command, hooks=Hooks(pre_start=[on_start]))
        assert status.exit_code == 0, err
        lines = out.splitlines()
        assert lines[0] == "0" and lines[1].split() == ["0", str(HOST_BASE), "65536"]
        # The image's root-owned files are root's in the container (an id-mapped rootfs) ...
        assert lines[2:4] == ["0", "0"] and (rootfs / "made").stat().st_uid == 0
        # ... while a host root's file elsewhere is nobody's, and what root makes there is 200000's on the host.
        assert lines[4] == str(NOBODY)
        assert (volume / "made-by-container").stat().st_uid == HOST_BASE
        assert lines[5] == "out"
        assert int(lines[6].split()[1], 16) != 0  # root in its namespace keeps its capabilities
    finally:
        shutil.rmtree(volume)


def test_the_init_and_exec_run_as_the_mapped_ids_on_the_host(driver: NativeDriver, rootfs: Path, cid: str) -> None:
    command = shell(cid, rootfs, "sleep 30", uid_mapping=MAPPING, gid_mapping=MAPPING)
    thread, result = start_in_background(driver, command)
    try:
        status = Path(f"/proc/{result['pid']}/status").read_text()
        assert f"Uid:\t{HOST_BASE}\t{HOST_BASE}" in status and f"Gid:\t{HOST_BASE}\t{HOST_BASE}" in status
        started: list[int] = []
        from execdriver import Hooks, OOMEvents

        gate_read, gate_write = os.pipe()  # the process waits on it until the hook has looked at it

        def on_start(_config: ProcessConfig, pid: int, _oom: OOMEvents) -> None:
            try:
                started.append(pid)
                started.append(int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0]))
            finally:
                os.close(gate_write)

        out = io.BytesIO()
        script = "cat >/dev/null; id -u; readlink /proc/self/ns/user; echo via-stdout > /dev/stdout"
        with os.fdopen(gate_read, "rb") as gate:
            code = driver.exec(command, ProcessConfig(entrypoint="sh", arguments=["-c", script]),
                               Pipes(stdin=gate, stdout=out), Hooks(start=on_start))
        assert code == 0
        uid, namespace, echoed = out.getvalue().decode().split()
        assert uid == "0" and namespace == os.readlink(f"/proc/{result['pid']}/ns/user") and echoed == "via-stdout"
        assert started[1] == HOST_BASE  # the exec'd process is the container's root, never the host's
    finally:
        driver.terminate(command)
        thread.join(10)


def _user_namespace(config: dict[str, object]) -> None:
    """An OCI config's user namespace, the container's 65536 ids from HOST_BASE on."""
    linux = config["linux"]
    assert isinstance(linux, dict)
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = [{"containerID": 0, "hostID": HOST_BASE, "size": 65536}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": HOST_BASE, "size": 65536}]


def test_an_oci_bundle_with_a_user_namespace(runtime: Runtime, bundle: Callable[..., Path],  # noqa: F811
                                             cid: str) -> None:
    out = runtime("run", "--bundle", str(bundle(["sh", "-c", "id -u; cat /proc/self/uid_map; stat -c %u /bin"],
                                                 _user_namespace)), cid).stdout
    assert out.split() == ["0", "0", str(HOST_BASE), "65536", "0"]

    def half(config: dict[str, object]) -> None:
        linux = config["linux"]
        assert isinstance(linux, dict)
        linux["uidMappings"] = [{"containerID": 0, "hostID": HOST_BASE, "size": 1}]

    result = runtime("run", "--bundle", str(bundle(["true"], half)), f"{cid}-b", check=False)
    assert result.returncode != 0 and "id mappings and a user namespace go together" in result.stderr


def test_bind_sources_the_remapped_root_may_not_search(runtime: Runtime, bundle: Callable[..., Path],  # noqa: F811
                                                        tmp_path: Path, cid: str) -> None:
    """runc's userns.bats: the runtime opens them before the user namespace (0700 directories of root's)."""
    sources = []
    for name in ("one", "two"):
        (tmp_path / name / "dir").mkdir(parents=True)
        (tmp_path / name / "dir" / "foo.txt").write_text(name)
        (tmp_path / name).chmod(0o700)
        sources.append(tmp_path / name / "dir")

    def userns(config: dict[str, object]) -> None:
        _user_namespace(config)
        mounts = config["mounts"]
        assert isinstance(mounts, list)
        mounts += [{"source": str(source), "destination": f"/mnt/{index}", "options": ["bind"]}
                   for index, source in enumerate(sources)]

    runtime("run", "-d", "--bundle", str(bundle(["sleep", "60"], userns)), cid)
    assert runtime("exec", cid, "cat", "/mnt/0/foo.txt", "/mnt/1/foo.txt").stdout == "onetwo"
    runtime("delete", "--force", cid)


@pytest.mark.parametrize(("uids", "message"), [
    ([IDMap(1, HOST_BASE, 10)], "the container's root .* must be mapped"),
    ([IDMap(0, HOST_BASE, 10), IDMap(5, HOST_BASE + 100, 10)], r"uid_mapping\[1\]: container ids 5\+10 overlap"),
    ([IDMap(0, HOST_BASE, 10), IDMap(100, HOST_BASE + 5, 10)], r"uid_mapping\[1\]: host ids .* overlap"),
])
def test_bad_mappings_are_named(driver: NativeDriver, busybox_rootfs: Path, cid: str, uids: list[IDMap],
                                message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run(driver, shell(cid, busybox_rootfs, "true", uid_mapping=uids, gid_mapping=MAPPING))
    assert driver.list() == []


# -- rootless ---------------------------------------------------------------------------


@pytest.fixture()
def nobody_dir(busybox_rootfs: Path) -> Iterator[Path]:
    """A directory of nobody's, with a copy of the rootfs, under /tmp (pytest's tree is root's alone)."""
    base = Path(tempfile.mkdtemp(prefix="execdriver-rootless-"))
    try:
        shutil.copytree(busybox_rootfs, base / "rootfs", symlinks=True)
        for path in [base, *base.rglob("*")]:
            os.lchown(path, NOBODY, NOBODY)
        base.chmod(0o755)
        yield base
        leftovers = [name for name in os.listdir(base / "state") if not name.startswith(".")] \
            if (base / "state").exists() else []
        assert leftovers == [], leftovers
    finally:
        shutil.rmtree(base)


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                           "env", "-i", "PATH=/usr/bin:/bin", *argv],
                          capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)


def test_rootless_sandbox_cli(nobody_dir: Path) -> None:
    cli = [str(Path(sys.executable).parent / "execdriver"), "--root", str(nobody_dir / "state"), "sandbox"]
    script = "id -u; cat /proc/self/uid_map; stat -c %u /bin/busybox; touch /made; grep Seccomp: /proc/self/status"
    result = as_nobody(*cli, "--rootfs", str(nobody_dir / "rootfs"), "--", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "0", str(NOBODY), "1", "0", "Seccomp:", "2"]
    assert (nobody_dir / "rootfs" / "made").stat().st_uid == NOBODY
    from execdriver.sandbox.options import NO_CGROUP

    # Without a cgroup for the user (no delegated subtree), the default limits are not applied,
    # and that is said; a limit asked for is refused. With one, both apply.
    explicit = as_nobody(*cli, "--rootfs", str(nobody_dir / "rootfs"), "--memory", "64m", "true")
    if NO_CGROUP in result.stderr:
        assert explicit.returncode == 125 and "limits need a cgroup" in explicit.stderr
    else:
        assert explicit.returncode == 0, explicit.stderr
    # What needs privileges says so.
    result = as_nobody(*cli, "--rootfs", str(nobody_dir / "rootfs"), "--network", "bridge", "true")
    assert result.returncode == 125 and "a bridge needs root" in result.stderr


_ROOTLESS_SANDBOX = """
import sys, warnings
sys.path.insert(0, {root!r})
from execdriver import ConfigError, sandbox
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = sandbox.run(code="import os; s = open('/proc/self/status').read(); print(os.getuid(), [l.split()[1] "
                              "for l in s.splitlines() if l.startswith(('CapEff', 'NoNewPrivs', 'Seccomp:'))])")
print(result.returncode, result.stdout.decode().strip())
print("warned" if any("no cgroup" in str(w.message) for w in caught) else "not warned")
slow = sandbox.run(["sleep", "30"], timeout=0.3)
print(slow.timed_out, slow.returncode)
try:
    sandbox.run(["id"], user="daemon")
except ConfigError as err:
    print("refused:", err)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    with sandbox.Template(size=2) as template:
        result = template.run("import os; s = open('/proc/self/status').read(); print(os.getuid(), [l.split()[1] "
                              "for l in s.splitlines() if l.startswith(('CapEff', 'NoNewPrivs', 'Seccomp:'))])")
        print("template", result.returncode, result.stdout.decode().strip())
        print("template", template.run("import time; time.sleep(30)", timeout=0.3).timed_out)
"""


def test_rootless_sandbox_run(nobody_dir: Path) -> None:
    """sandbox.run and a Template for a caller without privileges: root of its user namespace (the
    caller's own uid), without capabilities, filtered, timed; the default limits dropped with a
    warning where the host gives the user no cgroup."""
    code = _ROOTLESS_SANDBOX.format(root=str(Path(__file__).resolve().parent.parent))
    result = as_nobody("env", f"EXECDRIVER_ROOT={nobody_dir / 'state'}", sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "0 0 ['0000000000000000', '1', '2']", result.stdout
    assert lines[1] == "warned"  # (setpriv leaves nobody in our cgroup, which is root's: none is delegated)
    assert lines[2] == "True -9"
    assert lines[3].startswith("refused: user: 'daemon'")
    assert lines[4:] == ["template 0 0 ['0000000000000000', '1', '2']", "template True"], result.stdout


_ROOTLESS_API = """
import io, sys
sys.path.insert(0, {root!r})
from execdriver import Command, ConfigError, Pipes, ProcessConfig, Resources, new_driver
with new_driver("native", root={state!r}) as driver:
    out = io.BytesIO()
    status = driver.run(Command(id="r1", rootfs={rootfs!r}, hostname="rootless",
                                process_config=ProcessConfig(entrypoint="sh", arguments=["-c", "id -u; hostname"])),
                        Pipes(stdout=out))
    print(status.exit_code, out.getvalue().decode().split())
    try:
        driver.run(Command(id="r2", rootfs={rootfs!r}, resources=Resources(memory=1 << 26),
                           process_config=ProcessConfig(entrypoint="true")), Pipes())
    except ConfigError as err:
        print(err)
"""


def test_rootless_api(nobody_dir: Path) -> None:
    script = _ROOTLESS_API.format(root=ROOT, state=str(nobody_dir / "state"), rootfs=str(nobody_dir / "rootfs"))
    result = as_nobody(sys.executable, "-c", script)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first == "0 ['0', 'rootless']"
    assert second.startswith("resources.memory: limits need a cgroup")


def test_rootless_oci_bundle_from_spec_rootless(nobody_dir: Path) -> None:
    """`execdriver spec --rootless` writes what a user without privileges can run (as runc's does)."""
    cli = str(Path(sys.executable).parent / "execdriver")
    directory = nobody_dir
    result = as_nobody(cli, "spec", "--rootless", "--bundle", str(directory))
    assert result.returncode == 0, result.stderr
    config = json.loads((directory / "config.json").read_text())
    assert {"type": "user"} in config["linux"]["namespaces"]
    assert config["linux"]["uidMappings"] == [{"containerID": 0, "hostID": NOBODY, "size": 1}]
    config["process"]["args"] = ["sh", "-c", "id -u; cat /proc/self/uid_map; ls /sys/class/net | grep -c ."]
    (directory / "config.json").write_text(json.dumps(config))
    result = as_nobody(cli, "--root", str(directory / "state"), "run", "--bundle", str(directory), "rootless-oci")
    assert result.returncode == 0, result.stderr
    uid, inside, outside, size, links = result.stdout.split()
    assert (uid, inside, outside, size) == ("0", "0", str(NOBODY), "1") and int(links) >= 1  # the host's network


_DELEGATED = """
import io, os, sys
sys.path.insert(0, {root!r})
from execdriver import Command, Hooks, Pipes, ProcessConfig, Resources, new_driver
seen = []

def look(config, pid, oom):
    cgroup = open(f"/proc/{{pid}}/cgroup").read().strip()[3:]
    seen.extend(open(f"/sys/fs/cgroup{{cgroup}}/{{name}}").read().strip() for name in ("memory.max", "pids.max"))

with new_driver("native", root={state!r}, cgroup_manager={manager!r}) as driver:
    out = io.BytesIO()
    status = driver.run(Command(id="d1", rootfs={rootfs!r}, resources=Resources(memory=64 << 20, pids_limit=30),
                                process_config=ProcessConfig(entrypoint="cat", arguments=["/proc/self/cgroup"])),
                        Pipes(stdout=out), Hooks(pre_start=[look]))
    print(status.exit_code, out.getvalue().decode().strip(), *seen)
"""


@pytest.mark.skipif(not os.path.isdir("/run/systemd/system") or not os.path.exists("/sys/fs/cgroup/cgroup.controllers"),
                    reason="a delegated cgroup v2 subtree needs systemd and cgroup v2 (the guest runs this)")
def test_rootless_limits_in_the_users_delegated_subtree(busybox_rootfs: Path) -> None:
    """A user's programs under its systemd manager (user@UID.service) get cgroups with limits, as rootless podman.

    With the cgroupfs manager, directories in the delegated subtree; with the systemd one,
    a scope that the user's own manager makes, over the user's bus.
    """
    import uuid

    user, uid = f"edrl{uuid.uuid4().hex[:8]}", -1
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", user], check=True, timeout=60)
    try:
        uid = int(subprocess.run(["id", "-u", user], capture_output=True, text=True, check=True).stdout)
        subprocess.run(["loginctl", "enable-linger", user], check=True, timeout=60)
        subprocess.run(["systemctl", "start", f"user@{uid}.service"], check=True, timeout=120)
        base = Path(f"/home/{user}")
        shutil.copytree(busybox_rootfs, base / "rootfs", symlinks=True)
        for path in [base, *base.rglob("*")]:
            os.lchown(path, uid, uid)
        delegated = f"user.slice/user-{uid}.slice/user@{uid}.service"
        for manager, where in (("cgroupfs", "execdriver/d1"), ("systemd", "user.slice/execdriver-d1.scope")):
            script = _DELEGATED.format(root=ROOT, state=str(base / "state"), rootfs=str(base / "rootfs"),
                                       manager=manager)
            result = subprocess.run(["systemd-run", "--user", f"--machine={user}@", "--wait", "--pipe", "--quiet",
                                     sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                                    check=False, stdin=subprocess.DEVNULL)
            assert result.returncode == 0, (manager, result.stderr)
            code, cgroup, memory, pids = result.stdout.split()
            assert (code, memory, pids) == ("0", str(64 << 20), "30"), manager
            assert cgroup == f"0::/{delegated}/{where}"
            assert not (Path("/sys/fs/cgroup") / delegated / where).exists()
    finally:
        subprocess.run(["loginctl", "disable-linger", user], check=False, timeout=60)
        if uid >= 0:
            subprocess.run(["systemctl", "stop", f"user@{uid}.service"], check=False, timeout=120)
        subprocess.run(["userdel", "--remove", "--force", user], check=False, timeout=60)
