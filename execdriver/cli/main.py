"""``execdriver``: global flags, then one verb.

The verbs of runc's command line are reserved for the OCI runtime (they
must take runc's exact arguments, since engines call them that way).
"""

from __future__ import annotations

import argparse
import sys

from execdriver.errors import ExecDriverError

OCI_VERBS = (
    "create", "start", "run", "exec", "kill", "delete", "state", "list", "ps",
    "pause", "resume", "events", "update", "spec", "features", "checkpoint", "restore",
)


def _parser() -> argparse.ArgumentParser:
    from execdriver import __version__
    from execdriver.native.state import DEFAULT_ROOT

    parser = argparse.ArgumentParser(
        prog="execdriver",
        description="Run Linux containers: Docker's execdriver API and an OCI runtime, in Python.",
    )
    parser.add_argument("--version", action="version", version=f"execdriver {__version__}")
    parser.add_argument("--root", default=DEFAULT_ROOT, help="state directory (default: %(default)s)")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    from execdriver.cli import sandbox

    sandbox.add_parser(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    verb = next((a for a in args_list if not a.startswith("-")), None)
    if verb in OCI_VERBS:
        print(f"execdriver: '{verb}' is reserved for the OCI runtime command line, "
              "which this version does not have yet", file=sys.stderr)
        return 2
    parser = _parser()
    args = parser.parse_args(args_list)
    if args.verb is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        result: int = args.handler(args)
        return result
    except ExecDriverError as err:
        print(f"execdriver: {err}", file=sys.stderr)
        return 125
    except KeyboardInterrupt:
        return 130
