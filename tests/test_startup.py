"""The start path stays lean: what the CLI and the fork server import (docs/architecture.md, Start-up cost).

Each of these modules costs a command milliseconds (socket 10, array 3,
typing and dataclasses more): an import of one at the top of a module on a
start path fails here rather than in a benchmark.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.test_oci import bundle  # noqa: F401 - the fixture

REPOSITORY = Path(__file__).resolve().parent.parent
COMMAND = Path(sys.executable).parent / "execdriver"
HEAVY = {"argparse", "array", "collections", "contextlib", "dataclasses", "enum", "functools", "json", "re",
         "selectors", "signal", "socket", "subprocess", "threading", "typing"}


def _imported(argv: list[str], report: Path) -> set[str]:
    """The modules a fresh interpreter imports running ``argv`` (its -X importtime report).

    The report goes to a file: a created container's init keeps the
    command's stderr open until it starts.
    """
    with open(report, "w+", encoding="utf-8") as stderr:
        result = subprocess.run([sys.executable, "-IS", "-X", "importtime", *argv], stdout=subprocess.DEVNULL,
                                stderr=stderr, timeout=60, check=False, stdin=subprocess.DEVNULL)
        stderr.seek(0)
        text = stderr.read()
    assert result.returncode == 0, text[-2000:]
    return {line.split("|")[-1].strip() for line in text.splitlines() if line.startswith("import time:")}


def test_a_sandbox_imports_nothing_heavy(busybox_rootfs: Path, state_root: Path, tmp_path: Path) -> None:
    argv = [str(COMMAND), "--root", str(state_root), "sandbox", "--rootfs", str(busybox_rootfs), "true"]
    _imported(argv, tmp_path / "first")  # the first compiles the default seccomp profile (json), then kept
    imported = _imported(argv, tmp_path / "report")
    assert "execdriver.native.container" in imported and not imported & HEAVY, imported & HEAVY


def test_an_oci_lifecycle_imports_nothing_heavy(bundle: Callable[..., Path], state_root: Path,  # noqa: F811
                                                cid: str, tmp_path: Path) -> None:
    directory = bundle(["true"])
    try:
        for verb in (["create", "--bundle", str(directory), cid], ["state", cid], ["start", cid],
                     ["delete", "--force", cid]):
            imported = _imported([str(COMMAND), "--root", str(state_root), *verb], tmp_path / "report")
            assert "execdriver.native.state" in imported and not imported & HEAVY, (verb, imported & HEAVY)
    finally:
        subprocess.run([str(COMMAND), "--root", str(state_root), "delete", "--force", cid], timeout=30,
                       check=False, capture_output=True)


def test_the_fork_server_imports_nothing_heavy(tmp_path: Path) -> None:
    bootstrap = (f"import sys; sys.path.insert(0, {str(REPOSITORY)!r}); from execdriver import freeze; "
                 "freeze.use(); import execdriver.native.forkserver")
    imported = _imported(["-c", bootstrap], tmp_path / "report")
    assert "execdriver.native.forkserver" in imported and not imported & HEAVY, imported & HEAVY
