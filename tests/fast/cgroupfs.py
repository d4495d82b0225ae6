"""A temporary directory that behaves as cgroupfs for the managers' file work.

The managers open an interface file once and write(2) each value (a device
rule, say) on its own; the kernel takes each write as the file's new
value, while a regular file would pile them up. So writes to files below
the root replace the file's content and are logged, in order; a file can
be made to refuse, as the kernel refuses a value (EBUSY, EINVAL).
Everything else (reading, mkdir, rmdir) is the real filesystem.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


class CgroupFS:
    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.writes: list[tuple[str, str]] = []  # (path relative to the root, value), in order
        self.refusals: dict[str, int] = {}  # relative path -> errno its writes fail with
        self.refusals_once: dict[str, int] = {}  # the same, for the next write only
        self._real_write = os.write
        monkeypatch.setattr(os, "write", self._write)

    def _write(self, fd: int, data: ReadableBuffer) -> int:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        if not path.startswith(f"{self.root}/"):
            return self._real_write(fd, data)
        relative = os.path.relpath(path, self.root)
        value = bytes(data).decode()
        refusal = self.refusals.get(relative) or self.refusals_once.pop(relative, 0)
        if refusal:
            raise OSError(refusal, os.strerror(refusal))
        self.writes.append((relative, value))
        os.ftruncate(fd, 0)
        return os.pwrite(fd, bytes(data), 0)

    def make(self, directory: str, files: dict[str, str] | None = None) -> Path:
        """A cgroup directory (relative to the root) with interface files and their values."""
        path = self.root / directory if directory else self.root
        path.mkdir(parents=True, exist_ok=True)
        for name, value in (files or {}).items():
            (path / name).write_text(value)
        return path

    def read(self, relative: str) -> str:
        return (self.root / relative).read_text()

    def written(self, directory: str = "") -> list[tuple[str, str]]:
        """The writes below ``directory``, with paths relative to it."""
        if not directory:
            return list(self.writes)
        prefix = directory.rstrip("/") + "/"
        return [(path[len(prefix):], value) for path, value in self.writes if path.startswith(prefix)]
