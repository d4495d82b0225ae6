"""An exec'd process between fork and exec: into a running container.

``container.exec_process`` forks us already inside the container's pid
namespace (it set its own children's pid namespace around the fork) and
hands over the container's other namespaces as open descriptors. Here we
join the container's cgroup, then its namespaces, its user namespace first
(then we are its root, not the host's) and the mount one last (it makes
the container's root ours), and finish as the init does (execute.py).

While we run here we are a host interpreter inside the container's pid
namespace: non-dumpable from the first step, so that no process of the
container can open our /proc/<pid>/exe, memory or descriptors (the
CVE-2019-5736 class); every descriptor but stdio closes on exec.
"""

from __future__ import annotations

import os

from execdriver.linux import capabilities, syscalls
from execdriver.native import execute

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from execdriver.native.spec import ExecSpec


def run(spec: ExecSpec, namespaces: list[tuple[int, int]], status: int, stdio: tuple[int, int, int]) -> NoReturn:
    """Enter, then exec ``spec``'s process; failures go to ``status``."""
    process, security = spec.process, spec.security
    try:
        syscalls.set_dumpable(False)
        execute.take_stdio(stdio, process.preserve_fds)
        execute.default_signals()
        for tasks in spec.cgroup_tasks:
            _join(tasks)
        if process.terminal:
            from execdriver.linux import terminal  # now: in the container the package is out of sight
        shared_root = -1
        if not any(nstype == syscalls.CLONE_NEWNS for _, nstype in namespaces):
            # A container without a mount namespace of its own: its init chrooted (rootfs.setup);
            # into the same root, or we would run in the host's.
            shared_root = os.open(f"/proc/{spec.init[0]}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        for fd, nstype in namespaces:
            syscalls.setns(fd, nstype)
        if any(nstype == syscalls.CLONE_NEWUSER for _, nstype in namespaces):
            # Still the host's ids, unmapped there: become the container's root (init._wait_for_users).
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        if shared_root >= 0:
            os.fchdir(shared_root)
            os.chroot(".")
            os.close(shared_root)
        if process.terminal:  # in the container's devpts: the mount namespace is its own now
            os.setsid()
            terminal.attach(process.console_socket, process.console_size)
        capabilities.drop_bounding(security.capabilities, security.last_cap)  # as the init did
        executable, user, env = execute.resolve(process)
        execute.listener_channel = (status, status)  # (a socket when the filter notifies: exec_process)
        execute.become(process, security, executable, user, env)
    except BaseException as err:  # noqa: BLE001 - the child must never unwind
        execute.fail(status, err, "exec")


def _join(tasks: str) -> None:
    """Into a cgroup, by writing "0" (ourselves: see init._join_cgroup); a failure in runc's words."""
    step = "open"
    try:
        fd = os.open(tasks, os.O_WRONLY | os.O_CLOEXEC)
        step = "write"
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
    except OSError as err:
        raise execute.InitError(f"adding pid {os.getpid()} to cgroups: {step} {tasks}: "
                                f"{(err.strerror or str(err)).lower()}") from None
