"""A small command-line flag parser, in the manner of runc's (urfave/cli).

argparse costs several milliseconds to import (it pulls in re and gettext),
more than the rest of a container start; this does what the verbs need:
``--flag value``, ``--flag=value``, ``-f value``, boolean flags, repeated
flags, options before the positional arguments, and ``--`` to end them.
"""

from __future__ import annotations

# Bad command-line usage, exit 2: an error of the library too (oci/runtime.py raises it).
from execdriver.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Flag", "UsageError", "parse", "usage"]


class Flag:
    """One flag: its names, where its value goes, and how it takes values."""

    def __init__(self, *names: str, dest: str = "", kind: str = "value", default: object = None,
                 metavar: str = "VALUE", help: str = "") -> None:
        if kind not in ("value", "bool", "append"):
            raise ValueError(kind)
        self.names = names
        self.dest = dest or names[0].lstrip("-").replace("-", "_")
        self.kind = kind
        self.default = [] if kind == "append" and default is None else (False if kind == "bool" else default)
        self.metavar = metavar
        self.help = help


def parse(flags: Sequence[Flag], argv: Sequence[str], where: str) -> tuple[dict[str, object], list[str]]:
    """Options up to the first positional argument; returns (values, the rest)."""
    prefix = f"{where}: " if where else ""
    by_name = {name: flag for flag in flags for name in flag.names}
    values: dict[str, object] = {
        flag.dest: list(flag.default) if isinstance(flag.default, list) else flag.default for flag in flags
    }
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            return values, list(argv[index + 1 :])
        if not arg.startswith("-") or arg == "-":
            return values, list(argv[index:])
        name, has_value, inline = arg.partition("=")
        flag = by_name.get(name)
        if flag is None:
            raise UsageError(f"{prefix}unknown flag {name}")
        if flag.kind == "bool":
            if has_value and inline not in ("true", "false"):
                raise UsageError(f"{prefix}{name} takes no value")
            values[flag.dest] = inline != "false"
            index += 1
            continue
        if has_value:
            value = inline
            index += 1
        elif index + 1 < len(argv):
            value = argv[index + 1]
            index += 2
        else:
            raise UsageError(f"{prefix}{name} needs a value")
        if flag.kind == "append":
            current = values[flag.dest]
            assert isinstance(current, list)
            current.append(value)
        else:
            values[flag.dest] = value
    return values, []


def usage(flags: Sequence[Flag], synopsis: str, description: str) -> str:
    lines = [f"usage: {synopsis}", "", description, "", "options:"]
    for flag in flags:
        names = ", ".join(flag.names) + ("" if flag.kind == "bool" else f" {flag.metavar}")
        lines.append(f"  {names:28} {flag.help}")
    return "\n".join(lines)
