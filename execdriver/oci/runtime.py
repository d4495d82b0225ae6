"""The OCI lifecycle, as runc's command line drives it: create, start, exec, kill, delete, state.

Each ``cli/oci/*.py`` verb parses its flags and calls one method here; an
engine's runtime (containerd's shim, conmon) sees runc's behaviour. The
hooks, the pid file and the state document live here, on top of the
engine in native/container.py (which knows no OCI config):

    create   config.json -> launch spec (config.py); the container made,
             its init waiting on the exec FIFO; prestart, createRuntime and
             createContainer hooks; the state with the bundle, annotations,
             hooks and the config's process (exec starts from it)
    start    the FIFO read (the init runs the startContainer hooks and
             execs), poststart hooks (one that fails kills the container)
    exec     a process from --process or from the kept one with the
             command line's changes, with the container's kept seccomp program
    kill     the init, or (--all) every process of its cgroup
    delete   the cgroup and state; every poststop hook (a failure warns, as runc)
    state    the runtime spec's state document, with runc's extra fields

Imports are per method: ``state`` and ``kill`` load no config reader.
"""

from __future__ import annotations

import os

from execdriver.errors import ConfigError, ContainerError, NotRunningError, UsageError
from execdriver.native import container

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from execdriver.linux.cgroups.base import Manager
    from execdriver.native.protocol import Mode
    from execdriver.native.spec import ExecSpec, LaunchSpec, Process
    from execdriver.native.state import State, StateStore

OCI_VERSION = "1.0.2"


class ExecOptions:
    """What runc exec's command line changes in the container's process (``args`` given)."""

    __slots__ = ("additional_gids", "apparmor", "args", "cap", "cwd", "env", "no_new_privs", "process_label", "tty",
                 "user")

    def __init__(self, args: list[str], *, env: list[str] | None = None, user: str = "", cwd: str = "",
                 cap: list[str] | None = None, no_new_privs: bool = False, tty: bool = False,
                 additional_gids: list[int] | None = None, process_label: str = "", apparmor: str = "") -> None:
        self.args = args
        self.additional_gids = additional_gids or []
        self.process_label = process_label
        self.apparmor = apparmor
        self.env = env or []
        self.user = user
        self.cwd = cwd
        self.cap = cap or []
        self.no_new_privs = no_new_privs
        self.tty = tty


class OciRuntime:
    """The containers under one state root (runc's ``--root``)."""

    def __init__(self, root: str, systemd_cgroup: bool = False) -> None:
        from execdriver.native.state import StateStore

        self.store: StateStore = StateStore(root)
        self.systemd_cgroup = systemd_cgroup

    # -- the state document ------------------------------------------------------

    def _loaded(self, container_id: str) -> State:
        state = self.store.load(container_id)
        if state is None:
            raise NotRunningError(f"container {container_id} does not exist")
        return state

    def state(self, container_id: str) -> dict[str, Any]:
        """The runtime spec's state of the container, with runc's fields (rootfs, created, owner)."""
        state = self._loaded(container_id)
        current = container.status(self.store, state)
        return document(state, current, state.pid if current != "stopped" else 0, full=True)

    def states(self) -> list[dict[str, Any]]:
        """The state of every container, skipping any removed meanwhile."""
        entries = []
        for container_id in self.store.ids():
            try:
                entries.append(self.state(container_id))
            except NotRunningError:
                continue
        return entries

    # -- create and start --------------------------------------------------------

    def create(self, container_id: str, bundle: str, *, console_socket: str = "", pid_file: str = "",
               preserve_fds: int = 0, no_pivot: bool = False) -> int:
        """Create the container from ``bundle``, run the creation hooks, write the pid file: its init's pid.

        ``no_pivot``: the root is moved onto / and chrooted into (runc's --no-pivot).
        """
        prepared = self._prepare(container_id, bundle, preserve_fds, no_pivot)
        _check_terminal(prepared[0].process, console_socket, detach=True)
        return self._create(prepared, console_socket=console_socket, pid_file=pid_file).pid

    def _prepare(self, container_id: str, bundle: str, preserve_fds: int,
                 no_pivot: bool = False) -> tuple[LaunchSpec, dict[str, Any]]:
        """The launch spec of ``bundle``'s config, and what the state keeps of the config."""
        from execdriver.oci import config, hooks
        from execdriver.oci.process import seccomp_listener

        for fd in range(3, 3 + preserve_fds):
            try:
                os.fstat(fd)
            except OSError:
                raise UsageError(f"create: --preserve-fds {preserve_fds}: descriptor {fd} is not open") from None
        bundle = os.path.abspath(bundle)
        try:
            settings = config.load(bundle)
            spec = config.launch_spec(settings, bundle, container_id, self.store.path(container_id),
                                      systemd_cgroup=self.systemd_cgroup)
        except ConfigError as err:
            raise ConfigError(f"invalid configuration: {err}") from None  # runc's words, before the field's
        spec.process.preserve_fds = preserve_fds
        spec.filesystem.no_pivot = no_pivot
        # The process too: exec starts from it, as runc does from its saved config, even
        # once the bundle is gone or its config.json changed.
        oci = {"bundle": bundle, "annotations": settings.get("annotations") or {}, "hooks": hooks.parse(settings),
               "process": settings.get("process") or {}}
        listener = seccomp_listener(settings)
        if listener is not None:  # exec's processes report theirs to the same agent
            oci["seccomp_listener"] = list(listener)
        return spec, oci

    def _create(self, prepared: tuple[LaunchSpec, dict[str, Any]], *, console_socket: str = "", pid_file: str = "",
                stdio: tuple[int, int, int] = (0, 1, 2)) -> State:
        from execdriver.native.spawn import DirectSpawner
        from execdriver.oci import hooks

        spec, oci = prepared
        container_id, bundle, annotations, phase_hooks = spec.id, oci["bundle"], oci["annotations"], oci["hooks"]

        def creation_hooks(pid: int) -> None:
            state = _document(container_id, "created", pid, bundle, annotations)
            for phase in ("prestart", "createRuntime"):
                hooks.run(phase, phase_hooks, state)
            hooks.run("createContainer", phase_hooks, state, pid)

        console = _console_socket(spec.process, console_socket)
        try:
            state = container.create(self.store, DirectSpawner(), spec, stdio, oci, on_created=[creation_hooks],
                                     start_mode=_start_mode(container_id, bundle, annotations, phase_hooks),
                                     on_listener=_agent(oci, lambda pid: _document(
                                         container_id, "creating", pid, bundle, annotations)))
        finally:
            if console >= 0:
                os.close(console)
        if pid_file:
            write_pid_file(pid_file, state.pid)
        return state

    def start(self, container_id: str, created: State | None = None) -> int:
        """The startContainer and poststart hooks around the start: the init's pid.

        ``created``: what _create returned (run): the state need not be read again.
        """
        loaded = created or self.store.load(container_id)
        if loaded is not None and not (loaded.oci or {}).get("process", True):
            raise ConfigError(f"cannot start container {container_id}: its config.json has no process (the "
                              "runtime spec wants one to start)")
        state = container.start(self.store, container_id, created)  # (the init runs the startContainer hooks)
        phase_hooks = (state.oci or {}).get("hooks") or {}
        if phase_hooks.get("poststart"):
            from execdriver.oci import hooks

            # The state as start left it: running, with its pid. Read again now, a process as
            # short as `true` may have exited already, and the hook would be told "stopped", pid 0.
            try:
                hooks.run("poststart", phase_hooks, document(state, "running", state.pid, full=True))
            except Exception:
                # runc's: the container is stopped, and start fails (runtime spec, lifecycle step 9).
                container.kill(self.store, container_id, 9)
                raise
        return state.pid

    def run(self, container_id: str, bundle: str, *, detach: bool = False, keep: bool = False,
            console_socket: str = "", pid_file: str = "", preserve_fds: int = 0, no_pivot: bool = False) -> int:
        """create and start; in the foreground, wait (forwarding signals), delete: the exit code.

        A process with a terminal and no ``console_socket`` in the foreground
        gets a pty served on our own terminal, as with runc.
        """
        prepared = self._prepare(container_id, bundle, preserve_fds, no_pivot)
        process = prepared[0].process
        _check_terminal(process, console_socket, detach)
        if not process.terminal or console_socket:
            created = self._create(prepared, console_socket=console_socket, pid_file=pid_file)
            return self._run(created, detach, keep)
        from execdriver.console import Interactive

        with Interactive() as interactive:
            interactive.attach(process)
            created = self._create(prepared, pid_file=pid_file, stdio=interactive.console.stdio)
            return self._run(created, detach, keep, serve=interactive.console.transfer)

    def _run(self, created: State, detach: bool, keep: bool, serve: Callable[[int], None] | None = None) -> int:
        from execdriver.linux import signals

        container_id, pid = created.id, created.pid
        try:
            self.start(container_id, created)
        except BaseException:
            self.delete(container_id, force=True)
            raise
        if detach:
            return 0

        def forward(signum: int, _frame: object) -> None:
            try:
                container.kill(self.store, container_id, signum)
            except Exception:  # noqa: BLE001 - it may be gone
                pass

        for signum in signals.FORWARDED_SIGNALS:
            signals.signal_handle(signum, forward)
        if serve is not None:
            pidfd = os.pidfd_open(pid)
            try:
                serve(pidfd)
            finally:
                os.close(pidfd)
        # This process created the init, so it is its parent and reaps it.
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        if not keep:
            self.delete(container_id, force=True)
        return container.exit_code(status)

    # -- exec ----------------------------------------------------------------------

    def exec_spec(self, container_id: str, process: dict[str, Any] | None, options: ExecOptions | None,
                  preserve_fds: int = 0, sub_cgroups: list[str] | None = None) -> ExecSpec:
        """The exec'd process: ``process`` (--process) or the container's with ``options``' changes.

        ``sub_cgroups``: runc exec's --cgroup values, ``[controller[,controller]:]path``,
        each a cgroup below the container's that the process joins instead.

        The container's seccomp program is the one create compiled and kept;
        a container created by an older execdriver, which kept none, has its
        bundle's profile compiled again.
        """
        from execdriver.oci import process as oci_process

        state = self._loaded(container_id)
        try:
            with open(os.path.join(self.store.path(container_id), container.SECCOMP_PROGRAM), "rb") as handle:
                program: bytes | None = handle.read()
        except FileNotFoundError:
            program = None
        oci = state.oci or {}
        if "process" in oci and program is not None:
            # As create kept them: the bundle may be gone, or its config.json changed, since.
            settings: dict[str, Any] = {"process": oci["process"]}
        else:
            bundle = str(oci.get("bundle", ""))
            from execdriver.oci import config as oci_config

            settings = oci_config.load(bundle) if bundle else {}
        if process is None:
            assert options is not None
            process = process_with(settings.get("process") or {}, options)
        spec = oci_process.exec_spec(container_id, process, settings, program)
        spec.process.preserve_fds = preserve_fds
        spec.security.seccomp_notify = bool(spec.security.seccomp_bpf) and "seccomp_listener" in oci
        if sub_cgroups:
            from execdriver.linux import cgroups

            if not state.cgroup:
                raise ConfigError(f"exec --cgroup: container {container_id} has no cgroup")
            try:
                spec.cgroup_tasks = state.cgroup_manager().sub_join_files(_sub_cgroups(sub_cgroups))
            except cgroups.CgroupError as err:
                raise ConfigError(f"exec --cgroup: {err}") from None
        return spec

    def exec(self, container_id: str, spec: ExecSpec, *, detach: bool = False, pid_file: str = "",
             console_socket: str = "", stdio: tuple[int, int, int] = (0, 1, 2),
             serve: Callable[[int, Any], None] | None = None, ignore_paused: bool = False) -> int:
        """Run ``spec`` in the container: its exit code (0 at once with ``detach``).

        A process with a terminal and no ``console_socket`` in the foreground
        gets a pty served on our own terminal, as with runc.
        """
        from execdriver.native.spawn import DirectSpawner

        if serve is None and spec.process.terminal and not console_socket and not detach:
            from execdriver.console import Interactive

            with Interactive() as interactive:
                interactive.attach(spec.process)
                return self.exec(container_id, spec, pid_file=pid_file, stdio=interactive.console.stdio,
                                 serve=interactive.console.transfer, ignore_paused=ignore_paused)

        def started(pid: int) -> None:
            if pid_file:
                write_pid_file(pid_file, pid)
            if not detach:  # our child until we reap it: its pid cannot be reused meanwhile
                from execdriver.linux import signals

                for signum in signals.FORWARDED_SIGNALS:
                    signals.signal_handle(signum, lambda number, _frame: _forward(pid, number))

        if serve is None:
            _check_terminal(spec.process, console_socket, detach)
        on_listener = None
        if spec.security.seccomp_notify:  # (its agent, and the state the agent is sent, in the state)
            state = self._loaded(container_id)
            on_listener = _agent(state.oci or {}, lambda _pid: document(
                state, container.status(self.store, state), state.pid))
        console = -1 if serve is not None else _console_socket(spec.process, console_socket)
        try:
            return container.exec_process(self.store, DirectSpawner(), container_id, spec, stdio, detach=detach,
                                          start=started, serve=serve, paused_too=ignore_paused,
                                          on_listener=on_listener)
        finally:
            if console >= 0:
                os.close(console)

    def pids(self, container_id: str) -> list[int]:
        """Host pids of the container's processes: none once it stopped (runc's ps succeeds then)."""
        from execdriver.errors import UnsupportedError

        state = self._loaded(container_id)
        if not state.cgroup:
            raise UnsupportedError(f"container {container_id} has no cgroup (it was started without privileges)")
        manager = state.cgroup_manager()
        return manager.pids() if manager.exists() else []

    # -- kill and delete -------------------------------------------------------------

    def kill(self, container_id: str, signum: int, all_processes: bool = False) -> None:
        """Signal the init, or every process of the container's cgroup, as runc does.

        A stopped container's init is not signalled (its pid may be another
        process's by now): runc's "container not running", which containerd's
        shim takes for "already gone". ``all_processes`` of a stopped
        container whose cgroup is gone succeeds. SIGKILL thaws a paused
        container so that it dies (container.kill); ``all_processes``
        signals with the cgroup frozen (nothing forks meanwhile) and thaws
        it after, paused or not, as runc does.
        """
        state = self._loaded(container_id)
        current = container.status(self.store, state)
        if all_processes:
            if not state.cgroup:
                raise NotRunningError(f"container {container_id} has no cgroup: it cannot signal all its processes")
            manager = state.cgroup_manager()
            if current != "stopped" or manager.exists():
                _signal_all(manager, signum)
            return
        if current not in ("created", "running", "paused"):
            raise NotRunningError("container not running")
        try:
            container.kill(self.store, container_id, signum)
        except NotRunningError:
            raise NotRunningError("container not running") from None

    def delete(self, container_id: str, force: bool = False) -> list[str]:
        """Remove the container (``force``: whatever its status); its poststop hooks: the warnings they gave."""
        state = container.delete(self.store, container_id, force)
        if state is None:
            if force:
                return []
            raise NotRunningError(f"container {container_id} does not exist")
        oci = state.oci or {}
        if not (oci.get("hooks") or {}).get("poststop"):
            return []
        # Every one, whatever fails: the container is gone, a failure only warns (runc's).
        from execdriver import log
        from execdriver.oci import hooks

        failures = hooks.run("poststop", oci["hooks"], document(state, "stopped", 0), every=True)
        for failure in failures:
            log.warn(failure)
        return failures


def document(state: State, status: str, pid: int, full: bool = False) -> dict[str, Any]:
    """The runtime spec's state of ``state``'s container; ``full`` adds runc's fields (``state``, ``list``)."""
    oci = state.oci or {}
    bundle, annotations = str(oci.get("bundle", "")), oci.get("annotations") or {}
    if not full:
        return _document(state.id, status, pid, bundle, annotations)
    from execdriver.gojson import rfc3339nano_from

    # runc's fields in runc's order (list --format json is matched field by field), annotations if any.
    result = {"ociVersion": OCI_VERSION, "id": state.id, "pid": pid, "status": status, "bundle": bundle,
              "rootfs": state.rootfs, "created": rfc3339nano_from(state.created)}
    if annotations:
        result["annotations"] = annotations
    result["owner"] = ""
    return result


def _document(container_id: str, status: str, pid: int, bundle: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {"ociVersion": OCI_VERSION, "id": container_id, "status": status, "pid": pid, "bundle": bundle,
            "annotations": annotations}


def write_pid_file(path: str, pid: int) -> None:
    """The pid, without a newline, as runc writes it (atomically)."""
    temporary = f"{path}.tmp{os.getpid()}"
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(str(pid))
        os.rename(temporary, path)
    except OSError as err:
        raise ConfigError(f"--pid-file {path}: {err.strerror}") from None


def _agent(oci: dict[str, Any], state_of: Callable[[int], dict[str, Any]]) -> Callable[[int, int], None] | None:
    """The hand-over of a notifying seccomp filter's listener to the profile's agent, as runc makes it.

    The listener is the descriptor ``fd`` of process ``pid``, which waits:
    copied with pidfd_getfd, it goes over the agent's socket (listenerPath)
    with the container process's state (runtime spec's
    ContainerProcessState: "seccompFd", the pid, listenerMetadata, the
    container's state), and our copy is closed.
    """
    if "seccomp_listener" not in oci:
        return None
    path, metadata = oci["seccomp_listener"]

    def give(pid: int, fd: int) -> None:
        from execdriver.gojson import go_json
        from execdriver.linux import fdpass, syscalls

        pidfd = os.pidfd_open(pid)
        try:
            listener = syscalls.pidfd_getfd(pidfd, fd)
        finally:
            os.close(pidfd)
        try:
            try:
                channel = fdpass.connect(path)
            except OSError as err:
                raise ContainerError(f"failed to connect with seccomp agent specified in the seccomp profile: "
                                     f"{path}: {err.strerror}") from None
            try:
                message = {"ociVersion": OCI_VERSION, "fds": ["seccompFd"], "pid": pid, "metadata": metadata,
                           "state": state_of(pid)}
                fdpass.send_fds(channel, go_json(message).encode(), [listener])
            finally:
                channel.close()
        finally:
            os.close(listener)

    return give


def _start_mode(container_id: str, bundle: str, annotations: dict[str, str],
                phase_hooks: dict[str, list[dict[str, Any]]]) -> Mode | None:
    """What the init does after start: the startContainer hooks, with the state it will have then."""
    from execdriver.gojson import go_json
    from execdriver.native.protocol import Mode

    entries = phase_hooks.get("startContainer") or []
    if not entries:
        return None
    marker = -987654321  # its own pid, which only the init knows (runc's: as its namespace shows it)
    head, _, tail = go_json(_document(container_id, "created", marker, bundle, annotations)).partition(str(marker))
    start_hooks = [(hook["path"], list(hook.get("args") or []), list(hook.get("env") or []),
                    int(hook.get("timeout") or 0)) for hook in entries]
    return Mode(start_hooks=start_hooks, start_state=(head.encode(), tail.encode()))


def _check_terminal(process: Process, console_socket: str, detach: bool) -> None:
    """runc's rules, in its words: a pty is sent to a console socket when we detach, served by us otherwise."""
    if detach and process.terminal and not console_socket:
        raise UsageError("cannot allocate tty if execdriver will detach without setting console socket")
    if (not detach or not process.terminal) and console_socket:
        raise UsageError("cannot use console socket if execdriver will not detach or allocate tty")


def _console_socket(process: Process, path: str) -> int:
    """Connect the engine's console socket for a terminal process: -1 without one."""
    if not path:
        return -1
    from execdriver.linux import terminal

    try:
        fd = terminal.connect(path)
    except OSError as err:
        raise ConfigError(f"--console-socket {path}: {err.strerror}") from None
    process.console_socket = fd
    return fd


def _signal_all(manager: Manager, signum: int) -> None:
    from execdriver.linux import cgroups

    try:
        manager.freeze()
    except (OSError, cgroups.CgroupError):
        pass  # (runc warns and goes on)
    try:
        for pid in manager.pids():
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
    finally:
        try:
            manager.thaw()
        except (OSError, cgroups.CgroupError):
            pass


def _sub_cgroups(values: list[str]) -> dict[str, str]:
    """runc's reading of exec --cgroup: controller -> path, "" for a path for every controller."""
    subs: dict[str, str] = {}
    for value in values:
        parts = value.split(":")
        if len(parts) > 2:
            raise ConfigError(f"invalid --cgroup argument: {value}")
        if len(parts) == 1:
            if len(values) != 1:
                raise ConfigError(f"invalid --cgroup argument: {value} (missing <controller>: prefix)")
            subs[""] = value
        else:
            for controller in parts[0].split(","):
                subs[controller] = parts[1]
    return subs


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def process_with(base: dict[str, Any], options: ExecOptions) -> dict[str, Any]:
    """The container's process with the command line's changes, as runc exec makes it."""
    # A copy deep enough for what changes below (copy.deepcopy costs a millisecond of imports).
    process = dict(base)
    process["capabilities"] = {name: list(caps) for name, caps in (base.get("capabilities") or {}).items()}
    process["args"] = options.args
    process["terminal"] = options.tty
    env = list(process.get("env") or [])
    for entry in options.env:
        key = entry.split("=", 1)[0]
        env = [e for e in env if e.split("=", 1)[0] != key] + [entry]
    process["env"] = env
    if options.cwd:
        process["cwd"] = options.cwd
    process.setdefault("cwd", "/")
    if options.user:
        uid, _, gid = options.user.partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            raise UsageError(f"exec: --user {options.user!r} must be UID[:GID], numbers")
        process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    if options.additional_gids:
        user = dict(process.get("user") or {})
        user["additionalGids"] = [*(user.get("additionalGids") or ()), *options.additional_gids]
        process["user"] = user
    if options.process_label:
        process["selinuxLabel"] = options.process_label
    if options.apparmor:
        process["apparmorProfile"] = options.apparmor
    caps = process.setdefault("capabilities", {})
    for cap in options.cap:
        for name in ("bounding", "effective", "permitted"):
            caps.setdefault(name, []).append(cap)
    if options.no_new_privs:
        process["noNewPrivileges"] = True
    return process
