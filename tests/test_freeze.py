"""The frozen modules (execdriver/freeze.py), as bin/execdriver imports them, in an environment of the test's own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import execdriver
from execdriver import freeze

REPOSITORY = Path(__file__).resolve().parent.parent
VERSION_LINE = f'__version__ = "{execdriver.__version__}"'
EDITED_LINE = '__version__ = "' + "9" * len(execdriver.__version__) + '"'  # as long as the real one


def _environment(tmp_path: Path) -> tuple[Path, Path]:
    """A virtual environment's layout holding a copy of the package: (its launcher, the package)."""
    prefix = tmp_path / "env"
    package = prefix / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages" / "execdriver"
    shutil.copytree(REPOSITORY / "execdriver", package, ignore=shutil.ignore_patterns("__pycache__"))
    (prefix / "pyvenv.cfg").write_text(f"home = {os.path.dirname(sys.executable)}\n")
    launcher = prefix / "bin" / "execdriver"
    launcher.parent.mkdir()
    text = (REPOSITORY / "bin" / "execdriver").read_text()
    launcher.write_text(f"#!{sys.executable} -IS\n" + text.split("\n", 1)[1])
    launcher.chmod(0o755)
    return launcher, package


def _version(launcher: Path) -> str:
    result = subprocess.run([str(launcher), "--version"], capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.split()[2]


def _edit_keeping_stamp(path: Path, old: str, new: str) -> None:
    """Change a source so that only its content tells: same size, same modification time."""
    info = path.stat()
    path.write_text(path.read_text().replace(old, new))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert path.stat().st_size == info.st_size


def test_the_launcher_imports_frozen_modules_and_edited_sources(tmp_path: Path) -> None:
    launcher, package = _environment(tmp_path)
    assert _version(launcher) == execdriver.__version__  # nothing frozen: the sources
    built = Path(freeze.build(str(package)))
    assert built.parent == package / "__pycache__"
    for cached in package.rglob("*.pyc"):
        cached.unlink()  # they would remember the old text as the frozen file does
    init = package / "__init__.py"
    _edit_keeping_stamp(init, VERSION_LINE, EDITED_LINE)
    # The frozen module still matches the file's size and time: it runs, not the file.
    assert _version(launcher) == execdriver.__version__
    os.utime(init)  # an edit as editors make it: a new time
    assert _version(launcher) == EDITED_LINE.split('"')[1]
    for damaged in (b"\x08" + bytes(7) + b"not marshal", b"\xff" * 8 + b"an index of 2**64 bytes?", b"\x01"):
        built.write_bytes(damaged)  # ignored, never an error
        assert _version(launcher) == EDITED_LINE.split('"')[1]


@pytest.mark.parametrize("compiled", [False, True], ids=["launcher-source", "launcher-compiled"])
def test_a_container_runs_from_frozen_modules(tmp_path: Path, rootfs: Path, state_root: Path, compiled: bool) -> None:
    launcher, package = _environment(tmp_path)
    freeze.build(str(package), launcher=(str(REPOSITORY / "bin" / "execdriver"), str(launcher)) if compiled else None)
    assert ("marshal.loads(b" in launcher.read_text()) == compiled
    # Every module it imports is a frozen one: a source read instead would fail.
    poison = b'raise ImportError("read from its source")\n'
    for source in package.rglob("*.py"):
        info = source.stat()
        if info.st_size > len(poison):
            source.write_bytes(poison + b"#" * (info.st_size - len(poison) - 1) + b"\n")
            os.utime(source, ns=(info.st_atime_ns, info.st_mtime_ns))
    script = "echo $(hostname) $$; exit 7"
    result = subprocess.run([str(launcher), "--root", str(state_root), "sandbox", "--rootfs", str(rootfs),
                             "--hostname", "frozen", "sh", "-c", script],
                            capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert result.returncode == 7, result.stderr
    assert result.stdout == "frozen 1\n"


def test_the_compiled_launcher_refuses_another_interpreter(tmp_path: Path) -> None:
    launcher, package = _environment(tmp_path)
    freeze.build(str(package), launcher=(str(REPOSITORY / "bin" / "execdriver"), str(launcher)))
    assert _version(launcher) == execdriver.__version__
    tag = sys.implementation.cache_tag
    launcher.write_text(launcher.read_text().replace(f"!= {tag!r}", "!= 'cpython-00'"))
    result = subprocess.run([str(launcher), "--version"], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode != 0 and "run scripts/setup.sh again" in result.stderr, result


def test_frozen_modules_leave_out_the___future___import(tmp_path: Path) -> None:
    """Importing __future__ would cost every command 0.2 ms; its flag is compiled in instead."""
    launcher, package = _environment(tmp_path)
    freeze.build(str(package), launcher=(str(REPOSITORY / "bin" / "execdriver"), str(launcher)))
    result = subprocess.run([sys.executable, "-IS", "-X", "importtime", str(launcher), "--help"],
                            capture_output=True, text=True, timeout=30, check=True)
    imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert "execdriver.cli.main" in imported and "__future__" not in imported, imported
