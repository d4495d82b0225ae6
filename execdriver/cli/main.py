"""``execdriver [global flags] VERB [flags] [args]``: dispatch to one verb module.

Each verb lives in a module of its own with ``FLAGS``, ``SYNOPSIS``,
``DESCRIPTION`` and ``main(global_options, options, args)``, imported only
when called. The verbs of runc's command line take runc's flags, since
engines call them so; ``sandbox`` and ``stats`` are execdriver's own.

Errors go to stderr and, with ``--log FILE``, to that file as well: one
JSON object a line with ``--log-format json`` (containerd reads the last
error back from it), logfmt otherwise.
"""

from __future__ import annotations

import sys

from execdriver.cli.flags import Flag, UsageError, parse, usage
from execdriver.errors import ExecDriverError

VERBS = {
    "sandbox": ("execdriver.cli.sandbox", "run a command in a new container, in the foreground"),
    "stats": ("execdriver.cli.stats", "show a running container's resource use"),
    "create": ("execdriver.cli.oci.create", "create a container from an OCI bundle"),
    "start": ("execdriver.cli.oci.start", "start a created container"),
    "run": ("execdriver.cli.oci.run", "create and start a container"),
    "exec": ("execdriver.cli.oci.exec", "run a process in a running container"),
    "state": ("execdriver.cli.oci.state", "print a container's state"),
    "kill": ("execdriver.cli.oci.kill", "send a signal to a container"),
    "delete": ("execdriver.cli.oci.delete", "delete a container"),
    "list": ("execdriver.cli.oci.list", "list containers"),
    "ps": ("execdriver.cli.oci.ps", "list a container's processes"),
    "pause": ("execdriver.cli.oci.pause", "freeze a container"),
    "resume": ("execdriver.cli.oci.resume", "thaw a paused container"),
    "events": ("execdriver.cli.oci.events", "print a container's stats events"),
    "update": ("execdriver.cli.oci.update", "update a container's resource limits"),
    "spec": ("execdriver.cli.oci.spec", "write a default config.json"),
    "features": ("execdriver.cli.oci.features", "print the runtime's features"),
}
GLOBAL_FLAGS = (
    Flag("--root", default="", metavar="DIR",
         help="state directory (default /run/execdriver; a user's: $XDG_RUNTIME_DIR/execdriver)"),
    Flag("--log", default="", metavar="FILE", help="also write errors to FILE"),
    Flag("--log-format", default="text", metavar="FORMAT", help="text (default) or json"),
    Flag("--debug", kind="bool", help="log debug information"),
    Flag("--systemd-cgroup", kind="bool",
         help="put each container in a transient systemd scope (cgroupsPath slice:prefix:name)"),
    Flag("--rootless", default="auto", metavar="BOOL",
         help="true, false or auto: a user without privileges runs containers in a user namespace of its own"),
    Flag("--criu", default="", metavar="PATH", help="(accepted for runc compatibility; unused)"),
    Flag("--version", "-v", kind="bool", help="print the version and exit"),
    Flag("--help", "-h", kind="bool", help="show this help"),
)


def _help() -> str:
    text = usage(GLOBAL_FLAGS, "execdriver [global flags] VERB [flags] [args]",
                 "Run Linux containers: Docker's execdriver API and an OCI runtime, in Python.")
    verbs = "\n".join(f"  {name:28} {summary}" for name, (_, summary) in VERBS.items())
    return f"{text}\n\nverbs:\n{verbs}"


def _error(options: dict[str, object], message: str) -> None:
    """To the log first: an engine may give us stdio we cannot write (containerd's shim gives a
    pod's sandbox /dev/null opened read-only), and reads the error back from the log."""
    _log(options, message)
    try:
        print(f"execdriver: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _log(options: dict[str, object], message: str, level: str = "error") -> None:
    """A line in runc's log format, to --log; warnings and debug lines without one go to stderr."""
    path = str(options.get("log") or "")
    if not path and level == "error":
        return  # (_error prints it)
    from execdriver.gojson import go_json, rfc3339nano_now

    if path and options.get("log_format") == "json":
        line = go_json({"level": level, "msg": message, "time": rfc3339nano_now()})
    else:
        line = f'time="{rfc3339nano_now()}" level={level} msg={go_json(message)}'
    try:
        if path:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        else:
            print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _check_globals(options: dict[str, object]) -> None:
    if options["log_format"] not in ("text", "json"):
        raise UsageError(f"--log-format {options['log_format']}: text or json")
    if options["systemd_cgroup"]:
        from execdriver.linux.cgroups import systemd

        if not systemd.running():
            raise UsageError("--systemd-cgroup: systemd is not running on this host (use cgroupfs paths)")
    if options["rootless"] not in ("auto", "false", "true"):
        raise UsageError(f"--rootless {options['rootless']}: true, false or auto")
    import os

    if options["rootless"] == "false" and os.geteuid() != 0:
        raise UsageError("--rootless false: containers without a user namespace need root")
    if not options["root"]:
        from execdriver.native.state import DEFAULT_ROOT

        options["root"] = DEFAULT_ROOT


def main(argv: list[str] | None = None) -> int:
    options: dict[str, object] = {}
    error_exit = 1  # runc's; a verb may choose its own (sandbox: 125, as docker run)
    try:
        options, rest = parse(GLOBAL_FLAGS, sys.argv[1:] if argv is None else argv, "")
        if options["version"]:
            from execdriver import __version__

            print(f"execdriver version {__version__}\nspec: 1.0.2")
            return 0
        if options["help"] or not rest:
            print(_help(), file=sys.stdout if options["help"] else sys.stderr)
            return 0 if options["help"] else 2
        _check_globals(options)
        from execdriver import log

        log.sink, log.debugging = lambda level, message: _log(options, message, level), bool(options["debug"])
        verb, args = rest[0], rest[1:]
        if verb not in VERBS:
            raise UsageError(f"No help topic for '{verb}': unknown verb (see execdriver --help)")  # (runc's words)
        __import__(VERBS[verb][0])
        module = sys.modules[VERBS[verb][0]]
        error_exit = getattr(module, "ERROR_EXIT", error_exit)
        verb_options, verb_args = parse(module.FLAGS, args, verb, getattr(module, "REORDER_ARGS", False))
        if verb_options.get("help"):
            print(usage(module.FLAGS, module.SYNOPSIS, module.DESCRIPTION))
            return 0
        result: int = module.main(options, verb_options, verb_args)
        return result
    except UsageError as err:
        _error(options, str(err))
        return 2
    except ExecDriverError as err:
        _error(options, str(err))
        return error_exit
    except OSError as err:  # a file named on the command line, most likely
        _error(options, f"{err.strerror or err}" + (f": {err.filename}" if err.filename else ""))
        return error_exit
    except KeyboardInterrupt:
        return 130
    finally:
        _drop_unwritable_streams()


def _drop_unwritable_streams() -> None:
    """A stream we may not write (an engine's read-only /dev/null) still holds what we tried to
    write: the interpreter's last flush would fail and exit 120. It goes to /dev/null instead."""
    import os

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 - the interpreter closes it
