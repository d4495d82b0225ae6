"""``create``: set a container up from its bundle and leave it waiting for ``start``."""

from __future__ import annotations

import os

from execdriver.cli.flags import Flag, UsageError
from execdriver.cli.oci.common import console_socket, one_id, store, write_pid_file

SYNOPSIS = "execdriver create [flags] ID"
DESCRIPTION = "Create a container from an OCI bundle; its process starts with `execdriver start`."
FLAGS = (
    Flag("--bundle", "-b", default=".", metavar="DIR", help="the bundle (default: the current directory)"),
    Flag("--pid-file", default="", metavar="FILE", help="write the container's host pid to FILE"),
    Flag("--console-socket", default="", metavar="SOCKET", help="where to send the pty master (terminal)"),
    Flag("--no-pivot", kind="bool", help="(refused: this runtime always uses pivot_root)"),
    Flag("--no-new-keyring", kind="bool", help="do not create a session keyring (none is created)"),
    Flag("--preserve-fds", default="0", metavar="N", help="pass N more descriptors from 3 on"),
    Flag("--help", "-h", kind="bool", help="show this help"),
)


def create(global_options: dict[str, object], options: dict[str, object], container_id: str) -> int:
    """Shared with ``run``: create, run the creation hooks, write the pid file."""
    from execdriver.native import container
    from execdriver.native.spawn import DirectSpawner
    from execdriver.oci import config, hooks

    if options["no_pivot"]:
        raise UsageError("create: --no-pivot is not supported: this runtime always uses pivot_root")
    text = str(options["preserve_fds"])
    if not text.isdigit():
        raise UsageError(f"create: --preserve-fds {text}: not a number")
    preserve = int(text)
    for fd in range(3, 3 + preserve):
        try:
            os.fstat(fd)
        except OSError:
            raise UsageError(f"create: --preserve-fds {preserve}: descriptor {fd} is not open") from None
    bundle = os.path.abspath(str(options["bundle"]))
    states = store(global_options)
    settings = config.load(bundle)
    spec = config.launch_spec(settings, bundle, container_id, states.path(container_id),
                              systemd_cgroup=bool(global_options["systemd_cgroup"]))
    spec.process.preserve_fds = preserve
    phase_hooks = hooks.parse(settings)
    # The process too: exec starts from it, as runc does from its saved config, even
    # once the bundle is gone or its config.json changed.
    oci = {"bundle": bundle, "annotations": settings.get("annotations") or {}, "hooks": phase_hooks,
           "process": settings.get("process") or {}}

    def creation_hooks(pid: int) -> None:
        state = {"ociVersion": "1.0.2", "id": container_id, "status": "created", "pid": pid, "bundle": bundle,
                 "annotations": oci["annotations"]}
        for phase in ("prestart", "createRuntime"):
            hooks.run(phase, phase_hooks, state)
        hooks.run("createContainer", phase_hooks, state, pid)

    console = console_socket(spec.process, str(options["console_socket"]), "create")
    try:
        state = container.create(states, DirectSpawner(), spec, (0, 1, 2), oci, on_created=[creation_hooks])
    finally:
        if console >= 0:
            os.close(console)
    if options["pid_file"]:
        write_pid_file(str(options["pid_file"]), state.pid)
    return state.pid


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    create(global_options, options, one_id(args, "create"))
    return 0
