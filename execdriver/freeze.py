"""Freezing: every module of the package compiled into one file, which the CLI imports from.

A CLI command imports 30 to 40 of our modules. Through the import system
each costs a path search, two system calls and a pyc read, and its
docstrings are unmarshalled with its code. One file holding the compiled
code of every module, compiled as ``-OO`` compiles (no docstrings, which
nothing reads at run time: help texts are strings of their own; no
asserts, which here only narrow types), takes 1.2 ms off a 21 ms
``sandbox``. bin/execdriver puts a finder for it first in sys.meta_path;
a module is unmarshalled only when imported.

Each entry keeps its source's size and modification time: a module edited
since it was frozen is imported from its source as usual, so a
stale file is only slower. ``python -m execdriver.freeze`` (run by
scripts/setup.sh) builds it, into the package's __pycache__.

Format, read by bin/execdriver: the index's length (8 bytes, little
endian), the index, then each module's marshalled code. The index is
marshal of (MAGIC_NUMBER, {name: (source path, is_package, mtime_ns,
size, offset, length)}), the offsets counted from the end of the index:
a command reads the index and, with pread, just the modules it imports.
"""

from __future__ import annotations

import marshal
import os
import sys
from importlib.util import MAGIC_NUMBER

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
FILE_NAME = f"frozen.{sys.implementation.cache_tag}.bin"


def build(package_dir: str = PACKAGE_DIR) -> str:
    """Compile every module under ``package_dir`` into its frozen file; returns the file's path."""
    if "no_debug_ranges" not in sys._xoptions:
        # Without column positions (the carets under a traceback's line) the
        # code is a twelfth smaller, and commands start 0.2 ms sooner; only an
        # interpreter started so compiles without them.
        import subprocess

        return subprocess.run([sys.executable, "-I", "-X", "no_debug_ranges", os.path.abspath(__file__), package_dir],
                              check=True, capture_output=True, text=True).stdout.strip()
    index: dict[str, tuple[str, bool, int, int, int, int]] = {}
    codes: list[bytes] = []
    offset = 0
    parent = os.path.dirname(package_dir)
    for directory, subdirectories, files in os.walk(package_dir):
        subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
        for file_name in sorted(files):
            if not file_name.endswith(".py"):
                continue
            path = os.path.join(directory, file_name)
            dotted = os.path.relpath(path, parent)[:-3].replace(os.sep, ".")
            is_package = file_name == "__init__.py"
            name = dotted[: -len(".__init__")] if is_package else dotted
            with open(path, "rb") as handle:
                source = handle.read()
            info = os.stat(path)
            code = marshal.dumps(compile(source, path, "exec", dont_inherit=True, optimize=2))
            index[name] = (path, is_package, info.st_mtime_ns, info.st_size, offset, len(code))
            codes.append(code)
            offset += len(code)
    header = marshal.dumps((MAGIC_NUMBER, index))
    cache = os.path.join(package_dir, "__pycache__")
    os.makedirs(cache, exist_ok=True)
    target = os.path.join(cache, FILE_NAME)
    temporary = f"{target}.{os.getpid()}"
    with open(temporary, "wb") as handle:
        handle.write(len(header).to_bytes(8, "little") + header + b"".join(codes))
    os.replace(temporary, target)
    return target


if __name__ == "__main__":
    print(build(*sys.argv[1:2]))
