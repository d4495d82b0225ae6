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

__all__ = ["Flag", "UsageError", "go_int", "go_int_flag", "parse", "ram_in_bytes", "reorder", "usage"]


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


def reorder(argv: Sequence[str]) -> list[str]:
    """Flags (and the value after each) moved before the arguments, as runc's urfave/cli does for
    most verbs, so that ``update ID --memory 1G`` reads as ``update --memory 1G ID``.

    Its rule, not a flag's kind: whatever starts with "-" is a flag, and the
    argument after one without "=" goes with it unless that starts with "-"
    too; "--" ends it. When the flag turns out boolean, what the rule took
    for its value is the first argument again, as in Go's flag package.
    """
    flags: list[str] = []
    arguments: list[str] = []
    value_next = False
    for index, arg in enumerate(argv):
        if arg == "--":
            arguments += argv[index:]
            break
        if value_next and not arg.startswith("-"):
            value_next = False
            flags.append(arg)
            continue
        value_next = False
        if arg != "-" and arg.startswith("-"):
            flags.append(arg)
            value_next = "=" not in arg
        else:
            arguments.append(arg)
    return flags + arguments


def parse(flags: Sequence[Flag], argv: Sequence[str], where: str,
          reordered: bool = False) -> tuple[dict[str, object], list[str]]:
    """Options up to the first positional argument; returns (values, the rest).

    ``reordered``: flags may follow the arguments too (:func:`reorder`).
    """
    if reordered:
        argv = reorder(argv)
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


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def go_int(text: str, unsigned: bool = False) -> int:
    """A decimal int64 (uint64) as Go's strconv.ParseInt (ParseUint) reads it; ValueError in its words."""
    function = "ParseUint" if unsigned else "ParseInt"
    digits = text if unsigned else text[1:] if text[:1] in ("+", "-") else text
    run = len(digits) - len(digits.lstrip("0123456789"))
    valid = run == len(digits) > 0
    low, high = (0, 1 << 64) if unsigned else (-(1 << 63), 1 << 63)
    # Go reads digit by digit: an overflow before the first bad character is a range error.
    if (run and int(digits[:run]) >= 1 << 64) or (valid and not low <= int(text) < high):
        raise ValueError(f"strconv.{function}: parsing {_go_quote(text)}: value out of range")
    if not valid:
        raise ValueError(f"strconv.{function}: parsing {_go_quote(text)}: invalid syntax")
    return int(text)


def go_int_flag(text: str, name: str) -> int:
    """An urfave/cli IntFlag's value: Go's base prefixes (0x, 0o, 0b, a leading 0 for octal) and
    underscores; ValueError as runc reports it."""
    sign, body = (text[0], text[1:]) if text[:1] in ("+", "-") else ("", text)
    if len(body) > 1 and body[0] == "0" and (body[1].isdigit() or body[1] == "_"):
        body = "0o" + body[1:]
    try:
        if not body.isascii() or body[:1] in ("", "_") or " " in body:
            raise ValueError
        value = int(sign + body, 0)
    except ValueError:
        raise ValueError(f"invalid value {_go_quote(text)} for flag -{name}: parse error") from None
    if not -(1 << 63) <= value < 1 << 63:
        raise ValueError(f"invalid value {_go_quote(text)} for flag -{name}: value out of range")
    return value


_RAM_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(text: str) -> int:
    """A size such as 50M, 1.5g, 64MiB or 1024 (runc's units.RAMInBytes of go-units 0.4).

    ``^(\\d+(\\.\\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$`` without the re module
    (its import costs a start): units of 1024, case and the B optional.
    ValueError in go-units' words.
    """
    index = 0
    while index < len(text) and "0" <= text[index] <= "9":
        index += 1
    if index == 0:
        raise ValueError(f"invalid size: '{text}'")
    while index + 1 < len(text) and text[index] == "." and "0" <= text[index + 1] <= "9":
        index += 1
        while index < len(text) and "0" <= text[index] <= "9":
            index += 1
    number, rest = text[:index], text[index:]
    rest = rest[1:] if rest[:1] == " " else rest
    unit = rest[:1].lower() if rest[:1].lower() in _RAM_UNITS else ""
    rest = rest[len(unit):]
    rest = rest[1:] if rest[:1] in ("i", "I") else rest
    rest = rest[1:] if rest[:1] in ("b", "B") else rest
    if rest:
        raise ValueError(f"invalid size: '{text}'")
    if number.count(".") > 1:
        raise ValueError(f"strconv.ParseFloat: parsing {_go_quote(number)}: invalid syntax")
    size = float(number)
    if size == float("inf"):
        raise ValueError(f"strconv.ParseFloat: parsing {_go_quote(number)}: value out of range")
    size *= _RAM_UNITS.get(unit, 1)
    # Go's int64() of a float beyond int64 gives its minimum on amd64.
    return int(size) if size < 2**63 else -(1 << 63)
