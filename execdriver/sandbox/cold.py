"""``run``: one sandbox from nothing, through the driver's fork server.

Every run is a new container: its namespaces, a read-only root (the host's
view unless ``rootfs``), a fresh tmpfs /tmp, its own cgroup with the
limits, no capabilities, Docker's seccomp profile, no new privileges, and
a user without privileges. A time-out kills the container, its whole tree
with it (pid 1 of its namespace).
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
import uuid
from collections.abc import Mapping, Sequence

from execdriver.errors import ConfigError, ExecDriverError
from execdriver.sandbox import options
from execdriver.sandbox.result import Result, SandboxError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from execdriver.native.driver import NativeDriver
    from execdriver.native.spec import LaunchSpec

_shared: list[NativeDriver] = []
_shared_lock = threading.Lock()


def shared_driver() -> NativeDriver:
    """The driver every sandbox of this process runs under (its fork server starts on first use).

    When this process exits, the server kills what it still runs and
    removes it (forkserver.py).
    """
    with _shared_lock:
        if not _shared:
            from execdriver.native.driver import NativeDriver

            _shared.append(NativeDriver())
        return _shared[0]


def run(args: str | Sequence[str] | None = None, *, code: str | None = None, stdin: bytes | None = None,
        files: Mapping[str, bytes | str] | None = None, env: Mapping[str, str] | None = None,
        cwd: str = options.CWD, user: str = options.USER, rootfs: str | None = None,
        memory: int | None = options.MEMORY, cpus: float | None = options.CPUS, pids: int | None = options.PIDS,
        timeout: float | None = options.TIMEOUT, network: str = "none", tmp_size: int | None = options.TMP_SIZE,
        check: bool = False, python: str = "python3", driver: NativeDriver | None = None,
        sandbox_id: str | None = None) -> Result:
    """Run ``args`` (or ``code=`` with ``python``) in a new sandbox, as subprocess.run runs a program.

    ``stdin`` is fed to it; its output comes back in the Result. ``files``
    ({path: content}) are written below /tmp before it starts, relative
    paths in ``cwd``. ``rootfs`` None is the host's filesystem, read-only.
    ``network`` "none" is loopback alone; "host" shares the host's;
    "bridge" is Docker's default bridge, with NAT (root only). ``check``:
    raise SandboxFailed unless it exited 0 within its limits. ``driver``:
    the NativeDriver to run it under (default: one for the whole process,
    its state in the default root). ``sandbox_id``: its container's id
    (default ``sandbox-<random>``).
    """
    argv = options.argv_of(args, code, python)
    limits = options.Limits(memory, cpus, pids, tmp_size)
    if (memory, cpus, pids) == (options.MEMORY, options.CPUS, options.PIDS) and not options.cgroup_available():
        import warnings

        warnings.warn(options.NO_CGROUP, RuntimeWarning, stacklevel=2)
        limits = limits.without_cgroup()
    options.check(cwd, user, network)
    user = options.user_for_caller(user)
    written = options.files_of(files, cwd)
    seconds = options.timeout_of(timeout)
    runtime = driver or shared_driver()
    sandbox_id = sandbox_id or f"sandbox-{uuid.uuid4().hex[:16]}"
    spec = _spec(runtime, sandbox_id, argv, limits, cwd=cwd, user=user, rootfs=rootfs, env=options.env_of(env),
                 network=network)
    result = _run(runtime, spec, argv, stdin, written, seconds)
    if check:
        result.check_returncode()
    return result


async def run_async(args: str | Sequence[str] | None = None, **kwargs: object) -> Result:
    """``run``, awaited (the waiting is done in a worker thread). Cancelled, it kills the sandbox,
    or keeps it from starting."""
    import asyncio

    from execdriver.native import container
    from execdriver.native.driver import NativeDriver

    sandbox_id = str(kwargs.pop("sandbox_id", None) or f"sandbox-{uuid.uuid4().hex[:16]}")
    given = kwargs.get("driver")
    runtime = given if isinstance(given, NativeDriver) else shared_driver()
    with _cancel_lock:
        _watched.add(sandbox_id)
    work = asyncio.ensure_future(asyncio.to_thread(run, args, sandbox_id=sandbox_id, **kwargs))  # type: ignore[arg-type]

    def forget(_: object) -> None:
        with _cancel_lock:
            _watched.discard(sandbox_id)
            _cancelled.discard(sandbox_id)

    work.add_done_callback(forget)
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        with _cancel_lock:
            _cancelled.add(sandbox_id)
        try:
            container.kill(runtime.store, sandbox_id, signal.SIGKILL)
        except ExecDriverError:
            pass  # not started yet (it will not: _not_cancelled), or done
        raise


# Sandboxes awaited by run_async, and those whose await was cancelled: one cancelled before its
# init is ready must not start (_not_cancelled, as its last step before the go).
_cancel_lock = threading.Lock()
_watched: set[str] = set()
_cancelled: set[str] = set()


def _not_cancelled(sandbox_id: str) -> None:
    with _cancel_lock:
        if sandbox_id in _cancelled:
            _cancelled.discard(sandbox_id)
            raise SandboxError(f"sandbox {sandbox_id}: cancelled")


def _spec(runtime: NativeDriver, sandbox_id: str, argv: list[str], limits: options.Limits, *, cwd: str, user: str,
          rootfs: str | None, env: list[str], network: str) -> LaunchSpec:
    from execdriver.native import command

    store = runtime.store
    state_dir = store.path(sandbox_id)
    net = None
    if network != "none":
        from execdriver.linux.network import config

        net = command.complete_network(config.parse(host=network == "host", bridge="" if network == "bridge" else None),
                                       store, None)
    if rootfs is not None and not os.path.isdir(rootfs):
        raise ConfigError(f"rootfs: {rootfs!r} is not a directory")
    cgroup_limits = limits.cgroup(command.default_device_rules(False))
    return command.launch_spec(
        container_id=sandbox_id, state_dir=state_dir, argv=argv, rootfs=rootfs or "/", readonly=True,
        hostname="sandbox", working_dir=cwd, env=env, user=user, limits=cgroup_limits,
        network=net,
        security=command.process_security(False, state_dir, cap_drop=["ALL"], no_new_privileges=True),
        tmp_size=limits.tmp_size or 0,  # (always a fresh /tmp: files go there)
    )


def _run(runtime: NativeDriver, spec: LaunchSpec, argv: list[str], stdin: bytes | None,
         files: list[tuple[str, bytes]], timeout: float | None) -> Result:
    from execdriver.api import Pipes, ProcessConfig
    from execdriver.console import StdConsole
    from execdriver.linux import signals
    from execdriver.native import container

    store = runtime.store
    out, err = io.BytesIO(), io.BytesIO()
    console = StdConsole(ProcessConfig(), Pipes(stdin=io.BytesIO(stdin or b""), stdout=out, stderr=err))
    timed_out = threading.Event()
    usage = [0, 0]
    # The deadline may come before the init is ready (a slow start): it is killed as soon as it is.
    lock = threading.Lock()
    init = [-1]  # its pidfd, once ready
    expired = [False]

    def kill_init() -> None:
        """(Under the lock.) pid 1 of its namespace: every process of the sandbox goes with it."""
        try:
            signals.pidfd_send_signal(init[0], signal.SIGKILL)
            timed_out.set()
        except ProcessLookupError:
            pass  # it ended meanwhile

    def expire() -> None:
        with lock:
            expired[0] = True
            if init[0] >= 0:
                kill_init()

    def ready(pid: int) -> None:
        with lock:
            init[0] = os.pidfd_open(pid)
            if expired[0]:
                kill_init()

    def measure(_pid: int) -> None:
        accounting = spec.cgroup.manager().accounting()
        try:
            usage[:] = accounting.read()[:2]
        finally:
            accounting.close()

    timer = threading.Timer(timeout, expire) if timeout is not None else None
    begin = time.monotonic()
    try:
        if timer is not None:
            timer.start()
        code, oom_killed = container.run(
            store, runtime.spawner, spec, console.stdio, serve=console.transfer,
            pre_start=[*([lambda pid: write_files(pid, files)] if files else []),
                       *([lambda _pid: _not_cancelled(spec.id)] if spec.id in _watched else [])],
            post_stop=[measure], keep_parent=True, ready=ready if timer is not None else None)
    except ExecDriverError as error:
        raise SandboxError(f"sandbox {spec.id}: {error}") from error
    finally:
        if timer is not None:
            timer.cancel()
        with lock:
            if init[0] >= 0:
                os.close(init[0])
                init[0] = -1
        console.close()
    wall = time.monotonic() - begin
    returncode = -(code - 128) if code > 128 else code  # subprocess's sign for a signal
    return Result(argv, returncode, out.getvalue(), err.getvalue(), timed_out=timed_out.is_set(),
                  oom_killed=oom_killed, wall_time=wall, cpu_time=usage[0] / 1e9, peak_memory=usage[1], id=spec.id)


def write_files(pid: int, files: list[tuple[str, bytes]]) -> None:
    """Into the sandbox's fresh /tmp, before its program runs: through its root, never following a link.

    Made readable and writable by every user of the sandbox (all of them
    are its own), owned by root: the program may change them, not remove
    them from the sticky /tmp.
    """
    root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for path, content in files:
            parts = path.strip("/").split("/")
            directory = os.open("tmp", os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root)
            try:
                for part in parts[1:-1]:
                    try:
                        os.mkdir(part, 0o777, dir_fd=directory)
                        os.chmod(part, 0o777, dir_fd=directory, follow_symlinks=False)
                    except FileExistsError:
                        pass
                    inner = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
                    os.close(directory)
                    directory = inner
                fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o666, dir_fd=directory)
                try:
                    os.fchmod(fd, 0o666)
                    view = memoryview(content)
                    while view:
                        view = view[os.write(fd, view):]
                finally:
                    os.close(fd)
            finally:
                os.close(directory)
    except OSError as error:
        raise SandboxError(f"files: {error.filename or ''} {error.strerror}") from None
    finally:
        os.close(root)
