"""JSON and times as Go writes them: what the reference's types serialise to.

Kept apart from api.py, and free of the json package (which imports re),
so that a CLI verb can print Go JSON in a fraction of a millisecond of
imports. Strings go through json's own C encoder.
"""

from __future__ import annotations

import time

# json's own C encoder and scanner (CPython's _json), without the json package.
from _json import encode_basestring as _quote
from _json import encode_basestring_ascii as _quote_ascii
from _json import make_scanner as _make_scanner

TYPE_CHECKING = False
if TYPE_CHECKING:
    import datetime
    from collections.abc import Callable
    from typing import Any

_GO_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))


def _encode(value: Any, out: list[str], quote: Callable[[str], str] = _quote) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(quote(value))
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, float):
        if not float("-inf") < value < float("inf"):  # nan and the infinities
            raise ValueError(f"JSON has no {value}")
        out.append(repr(value))
    elif isinstance(value, dict):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            if index:
                out.append(",")
            out.append(quote(str(key)))
            out.append(":")
            _encode(item, out, quote)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out, quote)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


class _ScanContext:
    """What json's C scanner reads from a JSONDecoder: the defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return float(name.replace("Infinity", "inf"))


_scan = _make_scanner(_ScanContext())  # type: ignore[arg-type]  # any object with those attributes


_JSON_SPACE = " \t\n\r"  # JSON's whitespace, not str.strip's (U+00A0, U+2028 ...)


def loads(text: str) -> Any:
    """json.loads for our own files (state.json), without importing re.

    Raises ValueError on malformed input, like json.loads.
    """
    try:
        value, end = _scan(text, len(text) - len(text.lstrip(_JSON_SPACE)))
    except (StopIteration, SystemError, ValueError):
        # Malformed: json itself says where and why (the C scanner alone
        # cannot build its error without the json package).
        import json

        return json.loads(text)
    if text[end:].strip(_JSON_SPACE):
        import json

        return json.loads(text)
    return value


def go_json(obj: Any) -> str:
    """Serialise like Go's json.Marshal: compact, UTF-8, HTML characters escaped."""
    out: list[str] = []
    _encode(obj, out)
    text = "".join(out)
    for char, escape in _GO_ESCAPES:
        text = text.replace(char, escape)
    return text


def ascii_json(obj: Any) -> str:
    """Compact JSON with every non-ASCII character escaped: safe for any path,
    even one that is not valid UTF-8."""
    out: list[str] = []
    _encode(obj, out, _quote_ascii)
    return "".join(out)


def rfc3339nano(moment: datetime.datetime) -> str:
    """time.Time's JSON form: RFC 3339 with trailing zeros of the fraction cut."""
    text = moment.isoformat()
    if "." in text[:26]:
        head, _, rest = text.partition(".")
        digits = rest[:6].rstrip("0")
        text = head + ("." + digits if digits else "") + rest[6:]
    return text.replace("+00:00", "Z")


def rfc3339nano_now() -> str:
    """The current UTC time in that form, without importing datetime."""
    return rfc3339nano_from(time.time_ns() / 1e9)


def rfc3339nano_from(timestamp: float) -> str:
    """A Unix time in that form, without importing datetime."""
    # The whole seconds apart: times 1e9, a whole timestamp is past a float's exact
    # integers (2**53), and an exact .25 s would print as .249999872.
    seconds = int(timestamp // 1)
    nanos = min(round((timestamp - seconds) * 1e9), 999_999_999)
    fraction = f"{nanos:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + (f".{fraction}" if fraction else "") + "Z"


def pretty_json(obj: Any, indent: str = "  ") -> str:
    """json.dumps(obj, indent=2) as runc prints state: the same text, without the json package."""
    out: list[str] = []
    _pretty(obj, out, indent, "\n")
    return "".join(out)


def _pretty(value: Any, out: list[str], indent: str, newline: str) -> None:
    inner = newline + indent
    if isinstance(value, dict) and value:
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            out.append(("," if index else "") + inner + _quote_ascii(str(key)) + ": ")
            _pretty(item, out, indent, inner)
        out.append(newline + "}")
    elif isinstance(value, list | tuple) and value:
        out.append("[")
        for index, item in enumerate(value):
            out.append(("," if index else "") + inner)
            _pretty(item, out, indent, inner)
        out.append(newline + "]")
    else:
        _encode(value, out, _quote_ascii)
