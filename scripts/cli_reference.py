"""Write docs/cli.md from the CLI itself: its global help and every verb's, so the reference cannot drift.

    .venv/bin/python scripts/cli_reference.py [--check]

--check exits 1 when docs/cli.md differs from what the CLI says (the tests run it).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from execdriver.cli import main as cli
from execdriver.cli.flags import usage

TARGET = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def reference() -> str:
    parts = ["# Command line reference", "",
             "Generated from the command itself by `scripts/cli_reference.py`; the tests fail when it drifts.", "",
             "```text", cli._help(), "```", ""]
    for verb, (module_name, summary) in cli.VERBS.items():
        module = importlib.import_module(module_name)
        parts += [f"## {verb}", "", summary[:1].upper() + summary[1:] + ".", "", "```text",
                  usage(module.FLAGS, module.SYNOPSIS, module.DESCRIPTION), "```", ""]
    return "\n".join(parts)


def main() -> int:
    text = reference()
    if "--check" in sys.argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run scripts/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
