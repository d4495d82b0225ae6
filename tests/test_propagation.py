"""Mount propagation: nothing a container mounts appears on a host whose mounts are shared.

systemd mounts / shared, so on every host it runs a copy of the rootfs
taken in the host's namespace joins the host's peer group unless it is
made private. Here each test makes a shared tmpfs of its own, puts the
rootfs in it, and checks that no mount appears below it on the host, while
containers run and after they are gone, on every start path. (A bind of
a directory on the disk, not a tmpfs: id-mapped mounts of tmpfs need
Linux 6.3, and Debian 12's kernel is 6.1.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from execdriver import Hooks, IDMap, OOMEvents, ProcessConfig
from execdriver.cli.oci.spec import default_config
from execdriver.native.driver import NativeDriver
from tests.conftest import _special_files
from tests.helpers import run, shell
from tests.test_oci import Runtime, runtime  # noqa: F401 - fixture


def _mounts_below(directory: Path) -> list[str]:
    """Mount points strictly below ``directory`` in this (the host's) mount namespace."""
    prefix = str(directory) + "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        return [line.split()[4] for line in mountinfo if line.split()[4].startswith(prefix)]


@pytest.fixture()
def shared_rootfs(busybox_rootfs: Path, tmp_path: Path) -> Iterator[Path]:
    """A busybox rootfs on a mount of the test's own, shared as systemd mounts /."""
    shared = tmp_path / "shared"
    shared.mkdir()
    subprocess.run(["mount", "--bind", str(shared), str(shared)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(shared)], check=True)
        rootfs = shared / "rootfs"
        shutil.copytree(busybox_rootfs, rootfs, symlinks=True, ignore=_special_files)
        yield rootfs
    finally:
        subprocess.run(["umount", "--recursive", "--lazy", str(shared)], check=True)


def _seen_from_the_host(rootfs: Path) -> tuple[list[list[str]], Hooks]:
    """A pre_start hook that records, once the init's mounts are all made, what the host sees under ``rootfs``."""
    seen: list[list[str]] = []

    def look(_config: ProcessConfig, _pid: int, _oom: OOMEvents) -> None:
        seen.append(_mounts_below(rootfs.parent))
    return seen, Hooks(pre_start=[look])


def test_api_starts_on_a_shared_mount_leave_nothing_on_the_host(driver: NativeDriver, shared_rootfs: Path,
                                                                cid: str) -> None:
    seen, hooks = _seen_from_the_host(shared_rootfs)
    for index in range(3):  # the second one failed in pivot_root when the first one's mounts had leaked
        status, out, err = run(driver, shell(f"{cid}-{index}", shared_rootfs, "grep -c . /proc/self/mountinfo"),
                               hooks=hooks)
        assert status.exit_code == 0, err
        assert int(out) > 5  # its own proc, dev, sys ... are there, inside
    assert seen == [[], [], []]
    assert _mounts_below(shared_rootfs.parent) == []


def test_a_user_namespace_on_a_shared_mount_leaves_nothing_on_the_host(driver: NativeDriver, shared_rootfs: Path,
                                                                       cid: str) -> None:
    mapping = [IDMap(container_id=0, host_id=300000, size=65536)]
    seen, hooks = _seen_from_the_host(shared_rootfs)
    for index in range(2):  # the rootfs is root's: the init attaches an id-mapped copy of it
        status, out, err = run(driver, shell(f"{cid}-{index}", shared_rootfs, "stat -c %u /bin/busybox",
                                             uid_mapping=mapping, gid_mapping=mapping), hooks=hooks)
        assert (status.exit_code, out) == (0, "0\n"), err
    assert seen == [[], []]
    assert _mounts_below(shared_rootfs.parent) == []


def test_warm_sandboxes_on_a_shared_mount_leave_nothing_on_the_host(driver: NativeDriver, shared_rootfs: Path,
                                                                    cid: str) -> None:
    driver.warm(shell("template", shared_rootfs, "true"), 2)
    assert _mounts_below(shared_rootfs.parent) == []  # the idle sandboxes' mounts are theirs alone
    for index in range(3):
        status, _, err = run(driver, shell(f"{cid}-{index}", shared_rootfs, "true"))
        assert status.exit_code == 0, err
    driver.warm(shell("template", shared_rootfs, "true"), 0)
    assert _mounts_below(shared_rootfs.parent) == []


def test_oci_containers_on_a_shared_mount_leave_nothing_on_the_host(runtime: Runtime,  # noqa: F811
                                                                    shared_rootfs: Path, tmp_path: Path,
                                                                    cid: str) -> None:
    directory = tmp_path / "bundle"
    directory.mkdir()
    os.symlink(shared_rootfs, directory / "rootfs")
    config = default_config()
    config["process"].update(args=["sleep", "60"], terminal=False)
    (directory / "config.json").write_text(json.dumps(config))
    runtime("run", "-d", "--bundle", str(directory), cid)
    try:
        assert _mounts_below(shared_rootfs.parent) == []
    finally:
        runtime("delete", "--force", cid)
    config["process"]["args"] = ["true"]
    (directory / "config.json").write_text(json.dumps(config))
    result = runtime("run", "--bundle", str(directory), f"{cid}-2", check=False)
    assert result.returncode == 0, result.stderr
    assert _mounts_below(shared_rootfs.parent) == []



@pytest.fixture()
def shared_source(tmp_path: Path) -> Iterator[Path]:
    """A shared tmpfs of the test's own, with an empty ``later`` directory for the host to mount on."""
    source = tmp_path / "source"
    source.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(source)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(source)], check=True)
        (source / "later").mkdir()
        yield source
    finally:
        subprocess.run(["umount", "--recursive", "--lazy", str(source)], check=True)


def _mount_later(source: Path) -> None:
    """What the host mounts under the source once the container runs, and a mark in it."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(source / "later")], check=True)
    (source / "later" / "mark").write_text("x")


def test_a_host_mount_after_start_reaches_the_container_as_the_binds_propagation_says(
        runtime: Runtime, busybox_rootfs: Path, tmp_path: Path, shared_source: Path,  # noqa: F811
        cid: str) -> None:
    """As runc: the container's mounts are slaves of the host's (nothing goes back); a bind of a shared
    host directory receives what the host mounts there later, unless the bind is rprivate."""
    source = shared_source
    directory = tmp_path / "bundle"
    directory.mkdir()
    os.symlink(busybox_rootfs, directory / "rootfs")
    config = default_config()
    config["process"].update(args=["sleep", "60"], terminal=False)
    config["mounts"] += [
        {"destination": "/slave", "type": "bind", "source": str(source), "options": ["rbind", "rslave"]},
        {"destination": "/default", "type": "bind", "source": str(source), "options": ["rbind"]},
        {"destination": "/private", "type": "bind", "source": str(source), "options": ["rbind", "rprivate"]},
    ]
    (directory / "config.json").write_text(json.dumps(config))
    runtime("run", "-d", "--bundle", str(directory), cid)
    try:
        _mount_later(source)
        script = "for d in slave default private; do test -e /$d/later/mark && echo $d:seen || echo $d:not; done"
        shown = runtime("exec", cid, "sh", "-c", script).stdout.split()
        assert shown == ["slave:seen", "default:seen", "private:not"]
        # And nothing the container mounts goes back to the host.
        runtime("exec", cid, "mount", "-t", "tmpfs", "tmpfs", "/slave/later", check=False)
        assert _mounts_below(source) == [str(source / "later")]
    finally:
        runtime("delete", "--force", cid)


def test_an_api_volume_is_rprivate_as_dockers(driver: NativeDriver, busybox_rootfs: Path, shared_source: Path,
                                              cid: str) -> None:
    """The host's later mounts under a volume's source stay out of the container (Docker's default)."""
    from execdriver import Mount

    command = shell(cid, busybox_rootfs, "test -e /v/later/mark && echo seen || echo not",
                    mounts=[Mount(str(shared_source), "/v", True)])
    status, out, err = run(driver, command, hooks=Hooks(pre_start=[lambda *_: _mount_later(shared_source)]))
    assert status.exit_code == 0 and out.split() == ["not"], err
