"""Templates: sandboxes of an interpreter that has done its imports already, waiting for code.

A Template starts a *zygote* (zygote.py): the template's Python, in a
container of its own, that runs ``preload`` once and then clones sandboxes
from itself. A pool of ``size`` sandboxes waits, each made as far as it
can go without its code: namespaces, its own /proc, /tmp and /dev
filesystems, its cgroup with the limits, root given up, the seccomp
filter loaded. ``run`` hands the code to one; it runs it in a copy of the
preload's namespace (the modules loaded, the memory copy-on-write),
reports its exit status and waits to be killed. A sandbox serves one
request and is never reused; two threads refill the pool behind it, and
kill and remove those that are done while no request is served.

The runtime makes each sandbox's cgroup, below the template's own, and
hands the zygote its descriptors: the cgroup v2 directory to clone into,
the v1 ``tasks`` files the sandbox writes itself into (no pid is moved by
a write of its pid: syscalls.clone says why). docs/architecture.md has the
whole protocol.
"""

from __future__ import annotations

import asyncio
import collections
import marshal
import os
import select
import signal
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence

from execdriver.errors import ConfigError, ExecDriverError
from execdriver.linux import cgroups, fdpass, signals
from execdriver.sandbox import cold, options
from execdriver.sandbox.result import Result, SandboxError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from execdriver.linux.cgroups.base import Accounting, Manager
    from execdriver.linux.fdpass import Socket
    from execdriver.native.driver import NativeDriver

_REFILLERS = 2
_STARTUP_TIMEOUT = 60.0  # the zygote's preload (numpy: about a second here; a cold cache: more)
# A clone copies one thread: a library's thread pool (numpy's BLAS) would be
# missing in every sandbox, and its locks held forever. So the zygote asks
# the usual pools for none, and refuses a preload that started threads.
_ONE_THREAD = ("OPENBLAS_NUM_THREADS=1", "OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1", "NUMEXPR_NUM_THREADS=1")


class _Sandbox:
    """One waiting (then running) sandbox, as the runtime holds it."""

    def __init__(self, sandbox_id: str, cgroup: Manager, channel: Socket) -> None:
        self.id = sandbox_id
        self.cgroup = cgroup
        self.channel = channel
        self.pid = 0
        self.pidfd = -1
        self.status: int | None = None
        self.exited = threading.Event()
        # Made with the sandbox, not on the request's path: our ends of its stdin, stdout, stderr
        # and status pipes, and its cgroup's accounting files.
        self.streams = (-1, -1, -1, -1)
        self.accounting: Accounting | None = None

    def close_ours(self, keep_pidfd: bool = False) -> None:
        """Our descriptors of it (again: no harm); its pidfd, until it is killed, if ``keep_pidfd``."""
        self.channel.close()
        for fd in (*self.streams, -1 if keep_pidfd else self.pidfd):
            if fd >= 0:
                os.close(fd)
        self.streams = (-1, -1, -1, -1)
        if not keep_pidfd:
            self.pidfd = -1
        if self.accounting is not None:
            self.accounting.close()
            self.accounting = None


class Template:
    """Sandboxes of ``args`` (a Python interpreter; None: this one) that ran ``preload``, ``size`` of them waiting.

    The limits, ``user``, ``cwd``, ``env`` and ``network`` ("none" alone:
    loopback) are the template's, for every sandbox; ``driver`` as
    ``sandbox.run``'s. ``close()`` (or the
    end of a ``with`` block, or of the program) kills the zygote and every
    sandbox, and removes what they held.
    """

    def __init__(self, args: Sequence[str] | None = None, *, preload: str = "", size: int = 4,
                 memory: int | None = options.MEMORY, cpus: float | None = options.CPUS,
                 pids: int | None = options.PIDS, tmp_size: int | None = options.TMP_SIZE,
                 user: str = options.USER, cwd: str = options.CWD, env: Mapping[str, str] | None = None,
                 network: str = "none", driver: NativeDriver | None = None) -> None:
        argv = options.argv_of(args if args is not None else [sys.executable], None, "")
        if network != "none":
            raise ConfigError(f"network: {network!r}: a template's sandboxes have loopback alone (network='none')")
        if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= 256:
            raise ConfigError(f"size: {size!r} is not a number of sandboxes from 1 to 256")
        options.check(cwd, user, network)
        user = options.user_for_caller(user)
        if not cwd.startswith("/tmp"):
            raise ConfigError(f"cwd: {cwd!r}: a template's sandboxes start in their /tmp or below it")
        self.limits = options.Limits(memory, cpus, pids, tmp_size)
        self.id = f"template-{uuid.uuid4().hex[:12]}"
        self._cgroups = options.cgroup_available()
        # One cgroup for the whole template: the zygote's below it, and each sandbox's.
        self._tree = ""
        if self._cgroups:
            from execdriver.native.spec import DEFAULT_CGROUP_PARENT

            delegated = cgroups.delegated_subtree() if os.geteuid() != 0 else ""
            self._tree = f"{delegated}/{DEFAULT_CGROUP_PARENT}/{self.id}".lstrip("/")
        else:  # a caller without privileges on a host that delegates it no cgroup
            if (memory, cpus, pids) != (options.MEMORY, options.CPUS, options.PIDS):
                raise ConfigError("memory, cpus, pids: limits need a cgroup, and this host gives a user "
                                  "without privileges none (no delegated cgroup v2 subtree)")
            import warnings

            warnings.warn(options.NO_CGROUP, RuntimeWarning, stacklevel=2)
            self.limits = self.limits.without_cgroup()
        self.size = size
        self._driver = driver or cold.shared_driver()
        self._lock = threading.Condition()
        self._ready: collections.deque[_Sandbox] = collections.deque()
        self._by_pid: dict[int, _Sandbox] = {}
        self._done: list[_Sandbox] = []  # finished: their cgroups to remove
        self._replies: dict[str, tuple[bytes, list[int]]] = {}  # the zygote's answers, by sandbox id
        self._making = 0
        self._in_flight = 0  # requests being served: refills wait for them, unless the pool runs low
        self._closed = False
        self._failure: str = ""
        self._counter = 0
        self._device_rules = _device_rules()
        self._control, self._zygote_thread = self._start_zygote(argv, user, cwd, env, preload)
        self._reader = threading.Thread(target=self._read, name=f"{self.id}-reader", daemon=True)
        self._reader.start()
        # Two: one makes a cgroup while the zygote clones for the other.
        self._refillers = [threading.Thread(target=self._refill, name=f"{self.id}-refill-{n}", daemon=True)
                           for n in range(_REFILLERS)]
        for refiller in self._refillers:
            refiller.start()
        import atexit

        atexit.register(self.close)

    # -- the zygote ----------------------------------------------------------

    def _start_zygote(self, argv: list[str], user: str, cwd: str, env: Mapping[str, str] | None,
                      preload: str) -> tuple[Socket, threading.Thread]:
        from execdriver.linux import users
        from execdriver.native import command, container
        from execdriver.sandbox.zygote import Config

        store = self._driver.store
        state_dir = store.path(self.id)
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        boot = (f"import sys; sys.path.insert(0, {package_parent!r}); "
                "from execdriver.sandbox import zygote; zygote.main()")
        spec = command.launch_spec(
            container_id=self.id, state_dir=state_dir, argv=[*argv, "-I", "-c", boot], rootfs="/", readonly=True,
            hostname="sandbox", env=list(_ONE_THREAD),  # (and the default PATH: launch_spec)
            security=command.process_security(True, state_dir),  # every capability we have, no filter (clone, mount)
            cgroup_path=f"{self._tree}/zygote" if self._tree else "")
        spec.cgroup.tree = self._tree  # the sandboxes' cgroups below it go with the zygote's, should we not remove them
        try:
            who = users.resolve(user)
        except users.UserError as err:
            raise ConfigError(f"user: {err}") from None
        sandbox_security = command.process_security(False, state_dir, cap_drop=["ALL"], no_new_privileges=True)
        config = Config(preload, who.uid, who.gid, who.groups, cwd, options.env_of(env),
                        self.limits.tmp_size, sandbox_security.seccomp_bpf or b"")
        ours, theirs = fdpass.pair()
        error_read, error_write = os.pipe2(os.O_CLOEXEC)
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            try:
                container.run(store, self._driver.spawner, spec, (theirs.fileno(), null, error_write),
                              ready=lambda _pid: started.set(), keep_parent=True)
            except BaseException as err:  # noqa: BLE001 - handed to the constructor
                failure.append(err)
            finally:
                started.set()

        thread = threading.Thread(target=serve, name=f"{self.id}-zygote", daemon=True)
        thread.start()
        try:
            started.wait()
            theirs.close()
            os.close(null)
            os.close(error_write)
            if failure:
                raise SandboxError(f"template {self.id}: the zygote did not start: {failure[0]}")
            try:
                ours.send(config.wire())
                ready, _, _ = select.select([ours], [], [], _STARTUP_TIMEOUT)
                answer = ours.recv(8192) if ready else b""
            except OSError:
                answer = b""
            if answer != b"R":
                errors = b""
                if select.select([error_read], [], [], 1.0)[0]:
                    errors = os.read(error_read, 8192)
                why = answer[1:].decode(errors="replace") if answer.startswith(b"E") else "no answer"
                if not answer:
                    self._kill_zygote()
                    thread.join(10)
                    why = str(failure[0]) if failure else why
                raise SandboxError(f"template {self.id}: the preload failed: {why} {errors.decode(errors='replace')}"
                                   .strip())
        except BaseException:
            ours.close()
            self._kill_zygote()
            thread.join(10)
            raise
        finally:
            os.close(error_read)
        return ours, thread

    def _kill_zygote(self) -> None:
        from execdriver.native import container

        try:
            container.kill(self._driver.store, self.id, signal.SIGKILL)
        except ExecDriverError:
            pass  # gone already

    def _read(self) -> None:
        """The zygote's messages: answers to the refiller, and exits."""
        while True:
            try:
                message, fds = fdpass.recv_fds(self._control, 4096, 1)
            except OSError:
                message, fds = b"", []
            with self._lock:
                if not message:
                    self._failure = self._failure or "the zygote is gone"
                    for sandbox in list(self._by_pid.values()):
                        sandbox.exited.set()
                    self._lock.notify_all()
                    return
                if message.startswith(b"X"):
                    pid, status = marshal.loads(message[1:])
                    ended = self._by_pid.pop(pid) if pid in self._by_pid else None
                    if ended is not None:
                        ended.status = status
                        ended.exited.set()
                        if ended in self._ready:  # died waiting: its set-up failed
                            self._ready.remove(ended)
                            self._retire(ended)
                            self._set_up_failed(_set_up_error(ended) or _DIED_WAITING)
                else:
                    self._replies[message[1:].split(b" ", 1)[0].decode()] = (message, fds)
                self._lock.notify_all()

    # -- the pool ------------------------------------------------------------

    def _set_up_failed(self, why: str) -> str:
        """(Under the lock.) A sandbox that dies before its request says ``why`` on its channel: the
        template fails with that, rather than make sandboxes that die, one after the other."""
        failure = f"a sandbox could not be set up: {why}"
        self._failure = self._failure or failure
        return failure

    def _refill(self) -> None:
        """Remove what is done, and keep ``size`` sandboxes waiting (or being made)."""
        while True:
            with self._lock:
                while not self._closed and not self._removable() and (self._failure or not self._wants_one()):
                    self._lock.wait()
                if self._closed:
                    return
                done, self._done = (self._done, []) if self._removable() else ([], self._done)
                wanted = not done and self._wants_one()
                self._making += wanted
            _remove(done)
            if not wanted:
                continue
            try:
                made = self._make()
            except (OSError, ExecDriverError) as err:
                with self._lock:
                    self._failure = f"cannot make a sandbox: {err}"
                    self._making -= 1
                    self._lock.notify_all()
                continue
            with self._lock:
                self._making -= 1
                if made.status is None:
                    self._ready.append(made)
                else:  # it died already: its set-up failed
                    self._retire(made)
                    self._set_up_failed(_set_up_error(made) or _DIED_WAITING)
                self._lock.notify_all()

    def _removable(self) -> bool:
        """(Under the lock.) Whether to kill and remove the sandboxes done: a served one reported its
        status and waits to be killed; its exit (unmapping its copy of the zygote) waits for a moment
        when no request is served, or for ``size`` of them."""
        return bool(self._done) and (not self._in_flight or len(self._done) >= self.size)

    def _wants_one(self) -> bool:
        """(Under the lock.) Whether to make a sandbox now: the pool is short of ``size``, and no
        request is being served, or the pool is below half: a refill's work would slow them."""
        have = len(self._ready) + self._making
        return have < self.size and (not self._in_flight or have < (self.size + 1) // 2)

    def _make(self) -> _Sandbox:
        with self._lock:
            self._counter += 1
            sandbox_id = f"{self.id}-{self._counter}"
        cgroup = cgroups.manager(f"{self._tree}/{sandbox_id.rsplit('-', 1)[1]}" if self._tree else "",
                                 unified=False)  # (as the zygote's: parts.place_cgroup)
        cgroup.create(self.limits.cgroup(self._device_rules))
        fds: list[int] = []
        ours, theirs = fdpass.pair()
        sandbox = _Sandbox(sandbox_id, cgroup, ours)
        try:
            v2 = cgroups.v2_root()
            kind = b"1"
            fds.append(theirs.detach())
            for directory in cgroup.directories() if self._cgroups else []:
                if v2 and cgroups.is_v2_directory(directory):
                    fds.insert(1, os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
                    kind = b"2"
                else:
                    fds.append(os.open(os.path.join(directory, "tasks"), os.O_WRONLY | os.O_CLOEXEC))
            with self._lock:
                fdpass.send_fds(self._control, b"M" + kind + sandbox_id.encode(), fds)
                while sandbox_id not in self._replies and not self._failure:
                    self._lock.wait()
                if sandbox_id not in self._replies:
                    raise SandboxError(self._failure)
                message, pidfds = self._replies.pop(sandbox_id)
                if not message.startswith(b"P") or len(pidfds) != 1:
                    raise SandboxError("the zygote could not clone a sandbox: "
                                       + message.split(b" ", 1)[-1].decode(errors="replace"))
                sandbox.pid, sandbox.pidfd = int(message.split(b" ")[1]), pidfds[0]
                self._by_pid[sandbox.pid] = sandbox
            stdin_read, stdin_write = os.pipe2(os.O_CLOEXEC)
            out_read, out_write = os.pipe2(os.O_CLOEXEC)
            err_read, err_write = os.pipe2(os.O_CLOEXEC)
            report_read, report_write = os.pipe2(os.O_CLOEXEC)
            sandbox.streams = (stdin_write, out_read, err_read, report_read)
            fds += [stdin_read, out_write, err_write, report_write]  # (closed below)
            fdpass.send_fds(ours, b"S", [stdin_read, out_write, err_write, report_write])
            sandbox.accounting = cgroup.accounting()
        except BaseException:
            _remove([sandbox])
            raise
        finally:
            for fd in fds:
                os.close(fd)
        return sandbox

    def _retire(self, sandbox: _Sandbox, served: bool = False) -> None:
        """(Under the lock.) Its cgroup goes when the refiller gets to it, off the request's path."""
        self._done.append(sandbox)
        self._in_flight -= served
        self._lock.notify_all()

    def _take(self) -> _Sandbox:
        with self._lock:
            while not self._ready:
                if self._closed:
                    raise SandboxError(f"template {self.id} is closed")
                if self._failure:
                    raise SandboxError(f"template {self.id}: {self._failure}")
                self._lock.wait()
            sandbox = self._ready.popleft()
            self._in_flight += 1
            if self._wants_one():
                self._lock.notify_all()
            return sandbox

    def wait_full(self, timeout: float | None = None) -> bool:
        """Until ``size`` sandboxes wait (after a burst, say); False if ``timeout`` came first."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self._ready) >= self.size or self._closed or bool(self._failure),
                                       timeout) and len(self._ready) >= self.size

    def waiting_pids(self) -> list[int]:
        """The host pids of the sandboxes waiting now (to measure what they cost: bench/sandbox.py)."""
        with self._lock:
            pidfds = [sandbox.pidfd for sandbox in self._ready]
        pids = []
        for pidfd in pidfds:
            with open(f"/proc/self/fdinfo/{pidfd}", encoding="utf-8") as info:
                pids += [int(line.split()[1]) for line in info if line.startswith("Pid:")]
        return pids

    # -- running code ----------------------------------------------------------

    def run(self, code: str, *, stdin: bytes | None = None, files: Mapping[str, bytes | str] | None = None,
            env: Mapping[str, str] | None = None, timeout: float | None = options.TIMEOUT,
            check: bool = False) -> Result:
        """Run ``code`` in a sandbox of its own, as ``sandbox.run(code=...)`` does, with the preload done."""
        return self._run(code, stdin, files, env, timeout, check)

    def _run(self, code: str, stdin: bytes | None, files: Mapping[str, bytes | str] | None,
             env: Mapping[str, str] | None, timeout: float | None, check: bool, cancel: int = -1) -> Result:
        """``cancel``: an eventfd that, written, kills the sandbox (run_async's)."""
        if not isinstance(code, str):
            raise ConfigError("code: not a string")
        written = options.files_of(files, "/tmp")
        extra = options.env_of(env, path=False)  # over the template's, which has a PATH
        seconds = options.timeout_of(timeout)
        request = marshal.dumps((code, written, extra))
        while True:
            sandbox = self._take()
            try:
                result = self._serve(sandbox, request, stdin or b"", seconds, cancel)
                break
            except BrokenPipeError:  # it died waiting: another
                with self._lock:
                    self._retire(sandbox, served=True)
        if check:
            result.check_returncode()
        return result

    async def run_async(self, code: str, *, stdin: bytes | None = None,
                        files: Mapping[str, bytes | str] | None = None, env: Mapping[str, str] | None = None,
                        timeout: float | None = options.TIMEOUT, check: bool = False) -> Result:
        """``run``, awaited (the waiting is done in a worker thread). Cancelled, it kills the sandbox."""
        cancel = os.eventfd(0, os.EFD_CLOEXEC)
        work = asyncio.ensure_future(asyncio.to_thread(self._run, code, stdin, files, env, timeout, check, cancel))
        work.add_done_callback(lambda _: os.close(cancel))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            if not work.done():
                os.eventfd_write(cancel, 1)
            raise

    def _serve(self, sandbox: _Sandbox, request: bytes, stdin: bytes, timeout: float | None,
               cancel: int = -1) -> Result:
        begin = time.monotonic()
        try:
            sandbox.channel.send(request)
        except OSError:
            raise BrokenPipeError from None
        timed_out = False
        try:
            out, err, reported, timed_out = _transfer(sandbox, stdin, None if timeout is None else begin + timeout,
                                                      cancel)
            if reported is not None:
                status = reported << 8  # as waitpid's: it ends with _exit(reported)
            else:  # killed, or it left by os._exit: what the zygote saw
                if not sandbox.exited.wait(None if not timed_out else 10):
                    raise SandboxError(f"sandbox {sandbox.id}: its exit was never reported")
                if sandbox.status is None:
                    raise SandboxError(f"template {self.id}: {self._failure}")
                status = sandbox.status
                why = _set_up_error(sandbox)  # (None: the code's own os._exit, or a kill)
                if why is not None:
                    with self._lock:
                        failure = self._set_up_failed(why)
                    raise SandboxError(f"template {self.id}: {failure}")
            wall = time.monotonic() - begin
            cpu, peak, oom_kills = sandbox.accounting.read() if sandbox.accounting is not None else (0, 0, 0)
            oom_killed = oom_kills > 0
        finally:
            sandbox.close_ours(keep_pidfd=True)  # (to kill it, once it is time: _remove)
            with self._lock:
                self._retire(sandbox, served=True)
        return Result(["<code>"], os.waitstatus_to_exitcode(status), out, err, timed_out=timed_out,
                      oom_killed=oom_killed, wall_time=wall, cpu_time=cpu / 1e9, peak_memory=peak, id=sandbox.id)

    # -- the end -----------------------------------------------------------------

    def close(self) -> None:
        """Kill the zygote and every sandbox; remove their cgroups and state."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._lock.notify_all()
        import atexit

        atexit.unregister(self.close)
        self._kill_zygote()
        self._zygote_thread.join(30)
        self._control.close()
        for refiller in self._refillers:
            refiller.join(30)
        self._reader.join(30)
        with self._lock:
            left = [*self._ready, *self._done, *self._by_pid.values()]
            self._ready.clear()
            self._done = []
            for _, pidfds in self._replies.values():  # answers no refill took (it failed meanwhile)
                for fd in pidfds:
                    os.close(fd)
            self._replies.clear()
        _remove(list(dict.fromkeys(left)))
        if self._tree:  # (the zygote's end removed it, unless the zygote never started)
            try:
                cgroups.manager(self._tree, unified=False).destroy()
            except cgroups.CgroupError as err:
                print(f"execdriver: template {self.id}: {err}", file=sys.stderr)

    def __enter__(self) -> Template:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Template:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.close)


def _device_rules() -> list[tuple[str, str]]:
    from execdriver.native import command

    return command.default_device_rules(False)


_DIED_WAITING = "it exited while it waited for a request"


def _set_up_error(sandbox: _Sandbox) -> str | None:
    """What a sandbox that could not be set up wrote on its channel before it exited (zygote.py)."""
    for _ in range(2):  # (a peer gone with our messages unread leaves ECONNRESET first, then its own)
        try:
            message = sandbox.channel.recv(4096, fdpass.MSG_DONTWAIT)
        except ConnectionResetError:
            continue
        except OSError:
            return None
        return message[1:].decode(errors="replace") if message.startswith(b"E") else None
    return None


def _remove(sandboxes: list[_Sandbox]) -> None:
    """Their processes, our descriptors of them, their cgroups.

    Each pid 1 is killed first, all of them, through its pidfd (the kernel
    kills the rest of its namespace), then waited for on its pidfd: once it
    has exited, its namespace is empty and its cgroup can go.
    """
    for sandbox in sandboxes:
        if sandbox.pidfd >= 0:
            try:
                signals.pidfd_send_signal(sandbox.pidfd, signals.SIGKILL)
            except ProcessLookupError:
                pass
    for sandbox in sandboxes:
        if sandbox.pidfd >= 0:
            select.select([sandbox.pidfd], [], [], 5.0)
        sandbox.close_ours()
        try:
            sandbox.cgroup.kill()  # (anything left, should pid 1 have been gone already)
            sandbox.cgroup.destroy()
        except cgroups.CgroupError as err:
            print(f"execdriver: sandbox {sandbox.id}: {err}", file=sys.stderr)


def _transfer(sandbox: _Sandbox, stdin: bytes, deadline: float | None,
              cancel: int = -1) -> tuple[bytes, bytes, int | None, bool]:
    """Feed stdin, collect stdout, stderr and the reported status until all three close; kill at
    ``deadline``, or when ``cancel`` is readable. Returns (stdout, stderr, the status reported or
    None, timed out)."""
    stdin_write, out_read, err_read, report_read = sandbox.streams
    poller = select.poll()
    outputs: dict[int, list[bytes]] = {out_read: [], err_read: [], report_read: []}
    for fd in outputs:
        poller.register(fd, select.POLLIN)
    if cancel >= 0:
        poller.register(cancel, select.POLLIN)
    view = memoryview(stdin)
    if view:
        os.set_blocking(stdin_write, False)
        poller.register(stdin_write, select.POLLOUT)
    else:
        _close_stdin(sandbox)
    timed_out = False
    open_outputs = 3
    while open_outputs:
        wait = None if deadline is None or timed_out else max(0.0, deadline - time.monotonic()) * 1000
        events = poller.poll(wait)
        if not events and not timed_out:
            timed_out = True
            try:
                signals.pidfd_send_signal(sandbox.pidfd, signals.SIGKILL)  # pid 1: its whole namespace goes
            except ProcessLookupError:
                pass
            continue
        for fd, event in events:
            if fd == cancel:
                poller.unregister(fd)
                try:
                    signals.pidfd_send_signal(sandbox.pidfd, signals.SIGKILL)
                except ProcessLookupError:
                    pass
                continue
            if fd == stdin_write:
                try:
                    view = view[os.write(fd, view[:65536]):]
                except BrokenPipeError:
                    view = view[:0]
                if not view:
                    poller.unregister(fd)
                    _close_stdin(sandbox)
                continue
            chunk = os.read(fd, 65536) if event & (select.POLLIN | select.POLLHUP) else b""
            if chunk:
                outputs[fd].append(chunk)
            else:
                poller.unregister(fd)
                open_outputs -= 1
    report = b"".join(outputs[report_read])
    return (b"".join(outputs[out_read]), b"".join(outputs[err_read]),
            report[0] if len(report) == 1 and not timed_out else None, timed_out)


def _close_stdin(sandbox: _Sandbox) -> None:
    """End of its input."""
    os.close(sandbox.streams[0])
    sandbox.streams = (-1, *sandbox.streams[1:])
