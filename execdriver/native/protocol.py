"""The messages between the runtime, the fork server and a container's init, in one place.

Between the runtime and an init, over its two sync descriptors
``(go, status)``; each message is one write of at most PIPE_BUF bytes, so
it arrives whole:

    runtime -> init   USERS (+ rootfs tree)  in a user namespace: its mappings are
                                             written; an id-mapped rootfs comes along
    runtime -> init   CGROUP                 the cgroup exists: the init joins it
    init -> runtime   SECCOMP + fd number    its notifying seccomp filter is loaded
                                             (SCMP_ACT_NOTIFY): the runtime copies
                                             the listener (pidfd_getfd), gives it to
                                             the profile's agent, answers GO
    init -> runtime   READY                  rootfs ready, in its cgroup, program
                                             found (only when Mode.says_ready)
    runtime -> init   GO                     go ahead and exec (only when
                                             Mode.await_go); a warm sandbox's GO
                                             carries its process (Handover)
    init -> runtime   ERROR + message        a step failed; the init exits 1
    (end of file)                            execve succeeded: status was CLOEXEC

Between the runtime and its fork server (forkserver.py), over SOCK_SEQPACKET:
a :class:`Request` with six descriptors (reply socket, the init's sync
ends, stdin, stdout, stderr); the server answers ``P<pid>`` with the
init's pidfd, or ``E<error>``, then ``X<wait status>`` once it reaped it.

Every body is marshal's format: both ends are the same interpreter, and it
decodes several times faster than JSON.
"""

from __future__ import annotations

import marshal

from execdriver.native.spec import ExecSpec, LaunchSpec, Process

TYPE_CHECKING = False
if TYPE_CHECKING:
    # state directory, cgroup path, its parent levels, network lease token, the cgroup tree to remove (spec.Cgroup)
    Kept = tuple[str, str, int, str, str, bool]
    HookWire = tuple[str, list[str], list[str], int]  # path, args, env, timeout in seconds (0: none)

USERS = b"U"
CGROUP = b"C"
READY = b"R"
GO = b"G"
SECCOMP = b"S"
ERROR = b"E"

# The fork server's answers.
PID = b"P"
EXITED = b"X"
FAILED = b"E"


class Mode:
    """How an init goes from ready to exec: what its launcher waits for.

    * a run that has nothing to do between ready and exec: on at once
      (``await_go`` False), no READY either: the runtime's next wake-up is
      the exec's end of file;
    * a run with hooks or a network to finish: READY, then wait for GO;
    * an OCI create (``exec_fifo``): the process settled first (user,
      capabilities, limits, seccomp: what fails, fails create), READY,
      then wait for ``start`` to read the FIFO, then run the
      ``start_hooks`` (startContainer: path, args, env, timeout) as the
      process, with the state ``start_state`` (the JSON before and after
      its pid) on their stdin, as runc's init does;
    * a warm sandbox (``warm``): READY, load its seccomp filter ahead,
      then wait for a :class:`Handover`; ``prefault``: the pages it will
      write after that, written ahead; ``report_pages``: report them
      instead (linux/memory.py).
    """

    __slots__ = ("await_go", "exec_fifo", "fifo", "prefault", "report_pages", "start_hooks", "start_state", "warm")

    def __init__(self, await_go: bool = True, exec_fifo: str = "", warm: bool = False, prefault: bytes = b"",
                 report_pages: bool = False, start_hooks: list[HookWire] | None = None,
                 start_state: tuple[bytes, bytes] = (b"", b"")) -> None:
        self.await_go = await_go
        self.exec_fifo = exec_fifo
        self.warm = warm
        self.prefault = prefault
        self.report_pages = report_pages
        self.start_hooks = start_hooks or []
        self.start_state = start_state
        self.fifo = -1  # in the init: the FIFO's O_PATH descriptor, opened before the pivot

    def says_ready(self) -> bool:
        """Whether the init writes READY: only when its runtime waits for it."""
        return bool(self.exec_fifo or self.warm or self.await_go)

    def wire(self) -> tuple[bool, str, bool, bytes, bool, list[HookWire], tuple[bytes, bytes]]:
        return (self.await_go, self.exec_fifo, self.warm, self.prefault, self.report_pages, self.start_hooks,
                self.start_state)


class Request:
    """What an init, or an exec'd process, is cloned for: its spec, and how its init waits."""

    __slots__ = ("mode", "spec")

    def __init__(self, spec: LaunchSpec | ExecSpec, mode: Mode | None = None) -> None:
        self.spec = spec
        self.mode = mode or Mode()

    def encode(self) -> bytes:
        """What the child needs (LaunchSpec.child_wire): the runtime's own parts stay with the runtime."""
        if isinstance(self.spec, ExecSpec):
            return marshal.dumps((b"X", self.spec.wire(), None))
        return marshal.dumps((b"I", self.spec.child_wire(), self.mode.wire()))

    def kept(self) -> Kept | None:
        """What the fork server keeps to clean up after the container should its program die (None: an exec)."""
        spec = self.spec
        if isinstance(spec, ExecSpec):
            return None
        return (spec.state_dir, spec.cgroup.path, spec.cgroup.parent_levels,
                spec.network.token if spec.network is not None else "", spec.cgroup.tree, spec.cgroup.unified)


def decode(body: bytes) -> Request:
    kind, spec, mode = marshal.loads(body)
    if kind == b"X":
        return Request(ExecSpec.from_wire(spec))
    return Request(LaunchSpec.from_wire(spec), Mode(*mode))


def decode_init(body: bytes) -> tuple[LaunchSpec, Mode]:
    """A request that is surely an init's (a blank's: spawn.profile never offers it an exec)."""
    kind, spec, mode = marshal.loads(body)
    if kind != b"I":
        raise ValueError("not an init's request")
    return LaunchSpec.from_wire(spec), Mode(*mode)


def frame(profile: bytes, sources: list[str] | None, kept: Kept | None, body: bytes) -> bytes:
    """A fork server request, split: what the server keeps (Request.kept) and the child's body.

    The profile and the blank's tree sources lead, so that the server can
    hand a blank init the body without decoding it (spawn.profile,
    spawn.tree_sources).
    """
    encoded = marshal.dumps((sources, kept))
    return b"%s %d %s%s" % (profile, len(encoded), encoded, body)


def unframe(message: bytes) -> tuple[bytes, list[str] | None, Kept | None, bytes]:
    profile, _, rest = message.partition(b" ")
    length, _, rest = rest.partition(b" ")
    head: tuple[list[str] | None, Kept | None] = marshal.loads(rest[:int(length)])
    return profile, head[0], head[1], rest[int(length):]


class Handover:
    """A warm sandbox's GO: the container's process (argv, env, user, cwd), with its stdio as descriptors."""

    __slots__ = ("argv", "cwd", "env", "user")

    def __init__(self, process: Process) -> None:
        self.argv = process.argv
        self.env = process.env
        self.user = process.user
        self.cwd = process.cwd

    def encode(self) -> bytes:
        return GO + marshal.dumps((self.argv, self.env, self.user, self.cwd))

    @staticmethod
    def apply(message: bytes, process: Process) -> bool:
        """Take a handover's fields into ``process``; False if ``message`` is none."""
        if not message.startswith(GO):
            return False
        fields: tuple[list[str], list[str], str, str] = marshal.loads(message[1:])
        process.argv, process.env, process.user, process.cwd = fields
        return True
