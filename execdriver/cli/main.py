"""``execdriver [global flags] VERB [flags] [args]``: dispatch to one verb module.

Each verb lives in a module of its own with ``FLAGS``, ``SYNOPSIS``,
``DESCRIPTION`` and ``main(options, args)``, imported only when called.
The verbs of runc's command line are reserved for the OCI runtime: they
must take runc's exact arguments, because engines call them that way.
"""

from __future__ import annotations

import sys

from execdriver.cli.flags import Flag, UsageError, parse, usage
from execdriver.errors import ExecDriverError

VERBS = {
    "sandbox": ("execdriver.cli.sandbox", "run a command in a new container, in the foreground"),
    "stats": ("execdriver.cli.stats", "show a running container's resource use"),
}
OCI_VERBS = (
    "create", "start", "run", "exec", "kill", "delete", "state", "list", "ps",
    "pause", "resume", "events", "update", "spec", "features", "checkpoint", "restore",
)
GLOBAL_FLAGS = (
    Flag("--root", default="/run/execdriver", metavar="DIR", help="state directory (default /run/execdriver)"),
    Flag("--version", kind="bool", help="print the version and exit"),
    Flag("--help", "-h", kind="bool", help="show this help"),
)


def _help() -> str:
    text = usage(GLOBAL_FLAGS, "execdriver [global flags] VERB [flags] [args]",
                 "Run Linux containers: Docker's execdriver API and an OCI runtime, in Python.")
    verbs = "\n".join(f"  {name:28} {summary}" for name, (_, summary) in VERBS.items())
    return f"{text}\n\nverbs:\n{verbs}"


def main(argv: list[str] | None = None) -> int:
    try:
        options, rest = parse(GLOBAL_FLAGS, sys.argv[1:] if argv is None else argv, "")
        if options["version"]:
            from execdriver import __version__

            print(f"execdriver {__version__}")
            return 0
        if options["help"] or not rest:
            print(_help(), file=sys.stdout if options["help"] else sys.stderr)
            return 0 if options["help"] else 2
        verb, args = rest[0], rest[1:]
        if verb in OCI_VERBS:
            raise UsageError(f"'{verb}' is reserved for the OCI runtime command line, "
                             "which this version does not have yet")
        if verb not in VERBS:
            raise UsageError(f"unknown verb '{verb}' (see execdriver --help)")
        __import__(VERBS[verb][0])
        module = sys.modules[VERBS[verb][0]]
        verb_options, verb_args = parse(module.FLAGS, args, verb)
        if verb_options.get("help"):
            print(usage(module.FLAGS, module.SYNOPSIS, module.DESCRIPTION))
            return 0
        result: int = module.main(options, verb_options, verb_args)
        return result
    except UsageError as err:
        print(f"execdriver: {err}", file=sys.stderr)
        return 2
    except ExecDriverError as err:
        print(f"execdriver: {err}", file=sys.stderr)
        return 125
    except KeyboardInterrupt:
        return 130
