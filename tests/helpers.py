"""Small helpers shared by the container tests."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from execdriver import Command, ExitStatus, Hooks, Pipes, ProcessConfig
from execdriver.driver import Driver


def shell(cid: str, rootfs: Path | str, script: str, **fields: Any) -> Command:
    process = fields.pop("process_config", None) or ProcessConfig(entrypoint="sh", arguments=["-c", script])
    return Command(id=cid, rootfs=str(rootfs), process_config=process, **fields)


def run(driver: Driver, command: Command, stdin: bytes | None = None,
        hooks: Hooks | None = None) -> tuple[ExitStatus, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    pipes = Pipes(stdin=io.BytesIO(stdin) if stdin is not None else None, stdout=out, stderr=err)
    status = driver.run(command, pipes, hooks)
    return status, out.getvalue().decode(errors="replace"), err.getvalue().decode(errors="replace")


def openable_block_device() -> tuple[int, int]:
    """(major, minor) of a block device that the host's root can open: what an attacker would want.

    The disk that / is on; where this host refuses root even that (a
    sandboxed machine may), the first loop device.
    """
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        node = os.path.join(scratch, "disk")
        for device in (os.stat("/").st_dev, os.makedev(7, 0)):
            os.mknod(node, 0o600 | 0o060000, device)
            try:
                os.close(os.open(node, os.O_RDONLY))
                return os.major(device), os.minor(device)
            except OSError:
                os.unlink(node)
    raise AssertionError("the host's root can open neither the disk of / nor /dev/loop0: nothing to attack")


def cgroup_dir(path: str, controller: str = "memory") -> Path:
    """The directory of the cgroup ``path`` (relative to the root): in v1's ``controller`` hierarchy, or v2's."""
    from execdriver.linux import cgroups

    if cgroups.version() == 1:
        from execdriver.linux.cgroups.v1 import hierarchies

        return Path(hierarchies()[controller]) / path
    return Path(cgroups.ROOT) / path
