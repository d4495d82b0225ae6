"""Freezing: every module of the package compiled into one file, which the CLI imports from.

A CLI command imports 30 to 40 of our modules. Through the import system
each costs a path search, two system calls and a pyc read, and its
docstrings are unmarshalled with its code. One file holding the compiled
code of every module, compiled as ``-OO`` compiles (no docstrings, which
nothing reads at run time: help texts are strings of their own; no
asserts, which here only narrow types), takes 1.2 ms off a 21 ms
``sandbox``. bin/execdriver runs this module's own frozen code, and
:func:`install` puts a finder for the file first in sys.meta_path; a
module is unmarshalled only when imported. (The installed command is the
launcher compiled, :func:`compile_launcher`; the finder lives here, next
to the code that writes the format it reads.)

Each entry keeps its source's size and modification time: a module edited
since it was frozen is imported from its source as usual, so a
stale file is only slower. ``python -m execdriver.freeze`` (run by
scripts/setup.sh) builds it, into the package's __pycache__. The code is
compiled without the ``from __future__ import annotations`` statements
(with their flag): importing __future__ costs a command 0.2 ms. Nor do
functions keep their signatures' annotations, which only mypy reads and
which each command unmarshalled as strings (10 to 30 % of a module's
unmarshalling; a class's field annotations stay: dataclasses read them).

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

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ast
    from importlib.machinery import ModuleSpec
    from types import ModuleType

    Index = dict[str, tuple[str, bool, int, int, int, int]]

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
FILE_NAME = f"frozen.{sys.implementation.cache_tag}.bin"


def build(package_dir: str = PACKAGE_DIR, launcher: tuple[str, str] | None = None) -> str:
    """Compile every module under ``package_dir`` into its frozen file; returns the file's path.

    ``launcher``: (bin/execdriver, the installed command to write), see
    :func:`compile_launcher`.
    """
    if "no_debug_ranges" not in sys._xoptions:
        # Without column positions (the carets under a traceback's line) the
        # code is a twelfth smaller, and commands start 0.2 ms sooner; only an
        # interpreter started so compiles without them.
        import subprocess

        arguments = [package_dir, *(["--launcher", *launcher] if launcher else [])]
        return subprocess.run([sys.executable, "-I", "-X", "no_debug_ranges", os.path.abspath(__file__), *arguments],
                              check=True, capture_output=True, text=True).stdout.strip()
    if launcher is not None:
        compile_launcher(*launcher)
    import __future__

    import ast
    from importlib.util import MAGIC_NUMBER

    index: Index = {}
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
                tree = ast.parse(handle.read(), path)
            info = os.stat(path)
            _strip_signatures(tree)
            future = [node for node in tree.body if isinstance(node, ast.ImportFrom) and node.module == "__future__"]
            flags = 0
            if any(alias.name == "annotations" for node in future for alias in node.names):
                flags = __future__.annotations.compiler_flag
                tree.body = [node for node in tree.body if node not in future]
            code = marshal.dumps(compile(tree, path, "exec", flags=flags, dont_inherit=True, optimize=2))
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


def _strip_signatures(tree: ast.Module) -> None:
    """Drop every function's argument and return annotations (see the module's docstring)."""
    import ast

    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.returns = None
            arguments = node.args
            for argument in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                             arguments.vararg, arguments.kwarg):
                if argument is not None:
                    argument.annotation = None


def compile_launcher(source: str, target: str) -> None:
    """Write the command ``target``: the Python of bin/execdriver (``source``), compiled.

    The interpreter compiles the script it runs on every start, and the
    first compile in a process pays for the compiler's pages and arenas:
    2.3 ms and 0.45 MiB of peak RSS on every command (``--help`` 11.1 ->
    8.8 ms, interleaved), where a literal of the launcher's marshalled code
    compiles in 0.13 ms. The command becomes that literal, for this
    interpreter's bytecode alone.
    """
    with open(source, encoding="utf-8") as handle:
        code = compile(handle.read(), os.path.abspath(source), "exec", dont_inherit=True, optimize=2)
    tag = sys.implementation.cache_tag
    text = (f"#!{sys.executable} -IS\n"
            f"# {os.path.basename(source)}, compiled by python -m execdriver.freeze (scripts/setup.sh)\n"
            "import marshal, sys\n"
            f"if sys.implementation.cache_tag != {tag!r}:\n"
            f"    sys.exit('execdriver: compiled for {tag}; run scripts/setup.sh again')\n"
            f"exec(marshal.loads({marshal.dumps(code)!r}))\n")
    temporary = f"{target}.{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(temporary, 0o755)
    os.replace(temporary, target)


def use(package_dir: str = PACKAGE_DIR) -> bool:
    """Import ``package_dir``'s modules from its frozen file from now on, if it has a good one.

    What bin/execdriver does, for a process that can import this module
    first (the fork server).
    """
    from _frozen_importlib_external import MAGIC_NUMBER

    try:
        frozen = os.open(os.path.join(package_dir, "__pycache__", FILE_NAME), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        length = int.from_bytes(os.pread(frozen, 8, 0), "little")
        magic, index = marshal.loads(os.pread(frozen, min(length, 1 << 24), 8))
    except (OSError, EOFError, ValueError, TypeError):
        magic = None
    if magic != MAGIC_NUMBER:
        os.close(frozen)
        return False
    install(frozen, index, 8 + length)
    return True


def install(frozen: int, index: Index, base: int) -> None:
    """Import our modules from the frozen file open as ``frozen`` (bin/execdriver read ``index``).

    ``base``: where the modules' code starts. The descriptor stays open
    for the modules still to come; it is close-on-exec.
    """
    from _frozen_importlib import ModuleSpec as Spec

    class FrozenFinder:
        @staticmethod
        def find_spec(name: str, path: object = None, target: object = None) -> ModuleSpec | None:
            entry = index.get(name)
            if entry is None:
                return None
            try:
                info = os.stat(entry[0])
            except OSError:
                return None
            if (info.st_mtime_ns, info.st_size) != entry[2:4]:
                return None  # edited since: the source's own import
            spec: ModuleSpec = Spec(name, FrozenFinder, origin=entry[0], is_package=entry[1])  # type: ignore[arg-type]
            if entry[1]:
                spec.submodule_search_locations = [os.path.dirname(entry[0])]
            return spec

        @staticmethod
        def create_module(spec: ModuleSpec) -> None:
            return None

        @staticmethod
        def exec_module(module: ModuleType) -> None:
            source, _, _, _, offset, length = index[module.__name__]
            module.__file__ = source
            exec(marshal.loads(os.pread(frozen, length, base + offset)), module.__dict__)

    sys.meta_path.insert(0, FrozenFinder)


if __name__ == "__main__":
    # python -m execdriver.freeze [PACKAGE_DIR] [--launcher BIN_EXECDRIVER INSTALLED_COMMAND]
    arguments = sys.argv[1:]
    compiled: tuple[str, str] | None = None
    if "--launcher" in arguments:
        at = arguments.index("--launcher")
        compiled = (arguments[at + 1], arguments[at + 2])
        del arguments[at: at + 3]
    print(build(arguments[0] if arguments else PACKAGE_DIR, launcher=compiled))
