"""``ps``: the processes of a container, as ``ps -ef`` rows or a JSON list of pids."""

from __future__ import annotations

from execdriver.cli.flags import Flag, UsageError
from execdriver.cli.oci.common import runtime

SYNOPSIS = "execdriver ps [--format table|json] ID [ps options]"
DESCRIPTION = "List the processes of a container."
FLAGS = (
    Flag("--format", "-f", default="table", metavar="FORMAT", help="table (default) or json"),
    Flag("--help", "-h", kind="bool", help="show this help"),
)


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    if not args:
        raise UsageError("ps: expects a container id")
    pids = runtime(global_options).pids(args[0])
    if options["format"] == "json":
        from execdriver.gojson import ascii_json

        print(ascii_json(pids))
        return 0
    if options["format"] != "table":
        raise UsageError(f"ps: --format {options['format']}: table or json")
    import subprocess

    # As runc: the host's ps, its rows filtered to the container's pids.
    listing = subprocess.run(["ps", *(args[1:] or ["-ef"])], capture_output=True, text=True, check=False)
    if listing.returncode != 0:
        raise UsageError(f"ps: ps {' '.join(args[1:])}: {listing.stderr.strip()}")
    header, *rows = listing.stdout.splitlines() or [""]
    if "PID" not in header.split():
        raise UsageError(f"ps: ps {' '.join(args[1:])} shows no PID column to find the container's processes by")
    column = header.split().index("PID")
    print(header)
    for row in rows:
        fields = row.split()
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
            print(row)
    return 0
