"""The zygote: a template's interpreter, its preload done, cloning sandboxes from itself.

It runs as the init of a container of its own (template.py starts it):
the host's view of the filesystem, read-only, every capability, no
seccomp filter, and no cgroup namespace (it clones into cgroups beside
its own). Its standard input is a SOCK_SEQPACKET socket to the runtime:

    runtime -> zygote  config (marshal: see Config)             zygote answers R, or E<error>
    runtime -> zygote  M<2|1><id>, descriptors: the sandbox's end
                       of its channel, its cgroup v2 directory
                       (M2 only), then its v1 tasks files         P<id> <pid> with its pidfd, or F<id> <error>
    zygote -> runtime  X<marshal (pid, wait status)>             when a sandbox has exited

A sandbox is a clone (a copy of the zygote's memory, copy-on-write) in
new mount, pid, network, IPC and UTS namespaces, born in its own cgroup.
It mounts its own /proc, /tmp, /dev/shm, /dev/mqueue and /dev/pts, gives
up root (bounding set, user, no new privileges, the seccomp filter) and
waits on its channel for one request: first its stdio and a pipe for its
exit status (which it writes once the code is done, before its exit),
sent as it is made; then the code and its files. It runs the code in a copy of the preload's
namespace and exits; the zygote, its parent, reaps it. A sandbox serves
one request and never another.
"""

from __future__ import annotations

import gc
import marshal
import os
import select
import sys

from execdriver.linux import capabilities, fdpass, filesystem, rootfs, syscalls, users

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

# The clone flags of a sandbox: every namespace but the user and cgroup ones.
FLAGS = (syscalls.CLONE_NEWNS | syscalls.CLONE_NEWPID | syscalls.CLONE_NEWNET | syscalls.CLONE_NEWIPC
         | syscalls.CLONE_NEWUTS)


class Config:
    """What every sandbox of the template is: sent once, as marshal of ``wire()``."""

    __slots__ = ("cwd", "env", "gid", "groups", "preload", "seccomp", "tmp_size", "uid")

    def __init__(self, preload: str, uid: int, gid: int, groups: list[int], cwd: str, env: list[str],
                 tmp_size: int | None, seccomp: bytes) -> None:
        self.preload, self.uid, self.gid, self.groups = preload, uid, gid, groups
        self.cwd, self.env, self.tmp_size, self.seccomp = cwd, env, tmp_size, seccomp

    def wire(self) -> bytes:
        return marshal.dumps((self.preload, self.uid, self.gid, self.groups, self.cwd, self.env, self.tmp_size,
                              self.seccomp))

    @classmethod
    def from_wire(cls, data: bytes) -> Config:
        return cls(*marshal.loads(data))


def main() -> NoReturn:
    control = fdpass.wrap(0)
    message, _ = fdpass.recv_fds(control, 1 << 20, 0)
    config = Config.from_wire(message)
    namespace: dict[str, object] = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(config.preload, "<preload>", "exec"), namespace)
        _refuse_threads()
        _refuse_shared_writable_memory()
    except BaseException as err:  # noqa: BLE001 - reported, then we are done
        control.send(b"E" + f"{type(err).__name__}: {err}".encode(errors="replace")[:4000])
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    # Every sandbox is a copy of what is here now: no collection in the
    # copies will write to these objects' pages.
    gc.collect()
    gc.freeze()
    control.send(b"R")
    _serve(control, config, namespace)


def _refuse_threads() -> None:
    """A clone copies the calling thread alone: a sandbox would lack the others, and any lock they held."""
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("Threads:") and int(line.split()[1]) != 1:
                raise RuntimeError(f"the preload started threads ({int(line.split()[1]) - 1} besides the main one), "
                                   "which no sandbox would have: a library's pool (set its size to 1) or a thread "
                                   "of its own")


def _refuse_shared_writable_memory() -> None:
    """A writable MAP_SHARED mapping (mmap.mmap(-1, n), multiprocessing's) would be one memory for every
    sandbox: no template may have one."""
    with open("/proc/self/maps", encoding="utf-8") as maps:
        for line in maps:
            fields = line.split()
            if fields[1][1] == "w" and fields[1][3] == "s":
                where = fields[5] if len(fields) > 5 else "anonymous"
                raise RuntimeError(f"the preload left a writable shared mapping ({fields[0]} {where}), "
                                   "which every sandbox would share")


def _serve(control: fdpass.Socket, config: Config, namespace: dict[str, object]) -> NoReturn:
    import ctypes

    before_fork = ctypes.pythonapi.PyOS_BeforeFork
    after_parent = ctypes.pythonapi.PyOS_AfterFork_Parent
    children: dict[int, int] = {}  # pidfd -> pid
    poller = select.poll()
    poller.register(control, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd != control.fileno():
                pid = children.pop(fd)
                poller.unregister(fd)
                _, status = os.waitpid(pid, 0)
                os.close(fd)
                control.send(b"X" + marshal.dumps((pid, status)))
                continue
            message, fds = fdpass.recv_fds(control, 4096, 16)
            if not message:  # the runtime is gone: so are we, and (pid 1) every sandbox
                os._exit(0)
            try:
                cgroup = fds[1] if message[1:2] == b"2" else -1
                before_fork()
                try:
                    pid, pidfd = syscalls.clone(FLAGS, cgroup)
                except OSError:
                    after_parent()
                    raise
                if pid == 0:
                    _sandbox(fds[0], fds[2:] if cgroup >= 0 else fds[1:], config, namespace)
                after_parent()
            except OSError as err:
                control.send(b"F" + message[2:] + b" " + str(err).encode(errors="replace"))
            else:
                children[pidfd] = pid
                poller.register(pidfd, select.POLLIN)
                fdpass.send_fds(control, b"P" + message[2:] + b" %d" % pid, [pidfd])
            finally:
                for received in fds:
                    os.close(received)


def _sandbox(channel: int, tasks: list[int], config: Config, namespace: dict[str, object]) -> NoReturn:
    """In the new sandbox: settle, wait for the request, run it. Never returns.

    ``tasks``: the v1 hierarchies' tasks files to write ourselves into.
    """
    import ctypes

    try:
        ctypes.pythonapi.PyOS_AfterFork_Child()  # as os.fork's child: at-fork hooks (random reseeds itself)
        syscalls.close_all_but(channel, *tasks)
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, 0)  # not the zygote's control socket (its stdin); 1 and 2 are replaced by the request's
        os.close(null)
        for fd in tasks:  # the v1 hierarchies (a single-threaded process moving itself takes no global lock)
            os.write(fd, b"0")
            os.close(fd)
        _reseed()
        _mount_own_filesystems(config.tmp_size)
        syscalls.sethostname("sandbox")
        syscalls.loopback_up()
        os.chdir(config.cwd)
        capabilities.drop_bounding([], capabilities.last_cap())
        _set_groups(config.groups)
        os.setresgid(config.gid, config.gid, config.gid)
        os.setresuid(config.uid, config.uid, config.uid)
        capabilities.set_process([])  # gone with root already, but for root of a rootless user namespace
        syscalls.set_no_new_privs()
        if config.seccomp:
            syscalls.seccomp_set_filter(config.seccomp)
        os.environ.clear()
        os.environ.update(dict(line.split("=", 1) for line in config.env))
        _rehearse(namespace)
    except BaseException as err:  # noqa: BLE001 - the sandbox must never unwind into the zygote's loop
        # To the runtime, on our channel: it reads it when the zygote reports our exit (template.py).
        try:
            os.write(channel, b"E" + f"{type(err).__name__}: {err}".encode(errors="replace")[:4000])
        except OSError:
            pass
        os._exit(126)
    _wait_and_run(channel, namespace)


def _rehearse(namespace: dict[str, object]) -> None:
    """Walk a request's path once while waiting: the pages it writes (the compiler's, the output's)
    are copied from the zygote now, not while the request waits (about a millisecond)."""
    exec(compile("pass", "<string>", "exec"), dict(namespace))
    marshal.loads(marshal.dumps(("", [], [])))
    for stream in (sys.stdout, sys.stderr):
        stream.write("")
        stream.flush()


def _set_groups(groups: list[int]) -> None:
    """The user's groups; a user namespace made without privileges refuses setgroups (its
    /proc/self/setgroups is "deny"): there the sandbox keeps none but its gid."""
    try:
        os.setgroups(groups)
    except PermissionError:
        if users.setgroups_allowed():
            raise


def _reseed() -> None:
    """What a library seeded at start-up and did not reseed at fork: no two sandboxes share a stream."""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def _mount_own_filesystems(tmp_size: int | None) -> None:
    """Its own /proc (of its pid namespace, masked as Docker masks it), /tmp, /dev/shm, /dev/mqueue and
    /dev/pts: nothing the zygote's other sandboxes could write to or read from."""
    mount = syscalls.mount
    nosuid, nodev, noexec = syscalls.MS_NOSUID, syscalls.MS_NODEV, syscalls.MS_NOEXEC
    mount(None, "/", None, syscalls.MS_REC | syscalls.MS_SLAVE)
    mount("proc", "/proc", "proc", nosuid | nodev | noexec)
    for path in filesystem.MASKED_PATHS:
        if path.startswith("/proc/"):
            rootfs.mask(path)
    for path in filesystem.READONLY_PATHS:
        rootfs.make_readonly(path)
    mount("tmpfs", "/tmp", "tmpfs", nosuid | nodev, "mode=1777" + (f",size={tmp_size}" if tmp_size else ""))
    mount("shm", "/dev/shm", "tmpfs", nosuid | nodev | noexec, "mode=1777,size=65536k")
    mount("mqueue", "/dev/mqueue", "mqueue", nosuid | nodev | noexec)
    mount("devpts", "/dev/pts", "devpts", nosuid | noexec, "newinstance,ptmxmode=0666,mode=0620")


def _wait_and_run(channel: int, namespace: dict[str, object]) -> NoReturn:
    sock = fdpass.wrap(channel)
    _, fds = fdpass.recv_fds(sock, 16, 4)  # our stdio and status pipe, sent as we were made
    if len(fds) != 4:
        os._exit(125)
    *stdio, report = fds
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)
        os.close(fd)
    message = sock.recv(max(1, fdpass.next_size(sock)))  # the request
    sock.close()
    code, files, env = marshal.loads(message)
    status = 0
    try:
        for path, content in files:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(content)
        os.environ.update(dict(line.split("=", 1) for line in env))  # over the template's (_sandbox)
        program = compile(code, "<string>", "exec")
        exec(program, dict(namespace))
    except SystemExit as stop:
        status = _exit_status(stop.code)
    except BaseException:  # noqa: BLE001 - reported as python -c reports it
        import traceback

        traceback.print_exc()
        status = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed stream: nothing more to say
                pass
    # The status, and the end of the output, before the exit's own work (unmapping a copy of the
    # zygote's memory, the namespaces): the runtime answers then. (The code could write a status
    # of its own here, as it could exit with it: its own result is all it can change.) Then we
    # wait to be killed, which the runtime does once no request is waiting on the CPU (template.py).
    try:
        os.write(report, bytes((status,)))
    except OSError:
        pass
    os.closerange(0, 3)
    os.close(report)
    while True:
        select.select([], [], [])


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1
