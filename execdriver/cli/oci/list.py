"""``list``: the containers in the state directory."""

from __future__ import annotations

from execdriver.cli.flags import Flag, UsageError
from execdriver.cli.oci.common import runtime

SYNOPSIS = "execdriver list [-q] [--format table|json]"
DESCRIPTION = "List the containers."
FLAGS = (
    Flag("--quiet", "-q", kind="bool", help="only the ids"),
    Flag("--format", "-f", default="table", metavar="FORMAT", help="table (default) or json"),
    Flag("--help", "-h", kind="bool", help="show this help"),
)


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    if args:
        raise UsageError("list: takes no arguments")
    if options["format"] not in ("table", "json"):
        raise UsageError(f"list: --format {options['format']}: table or json")
    entries = runtime(global_options).states()
    if options["quiet"]:
        print("\n".join(str(e["id"]) for e in entries))
    elif options["format"] == "json":
        from execdriver.gojson import ascii_json

        print(ascii_json(entries))
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(str(e["id"]), str(e["pid"]), str(e["status"]), str(e["bundle"]), str(e["created"]), "root")
                 for e in entries]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0
