"""The fast tier: pure functions, run without root in seconds (``pytest -m fast tests/fast``).

Each file here marks itself (``pytestmark = pytest.mark.fast``): tests/conftest.py
skips every unmarked test for a user without root, and ``-m fast`` would
drop it silently, so an unmarked test here is an error instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fast.cgroupfs import CgroupFS

_HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)  # before -m deselects what lacks the mark
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [item.nodeid for item in items
                if _HERE in item.path.parents and item.get_closest_marker("fast") is None]
    if unmarked:
        raise pytest.UsageError(f"tests/fast: not marked fast (pytestmark = pytest.mark.fast): {unmarked}")


@pytest.fixture()
def cgroupfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CgroupFS:
    """An empty directory that behaves as cgroupfs (cgroupfs.py says how)."""
    root = tmp_path / "cgroup"
    root.mkdir()
    return CgroupFS(root.resolve(), monkeypatch)
