"""The docs: they build without a warning, the CLI reference is the CLI's, and every Python example runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = [(page, index, block) for page in PAGES
            for index, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), re.S))]


def test_the_cli_reference_is_what_the_cli_says() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli_reference.py"), "--check"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_the_docs_build_without_warnings(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    result = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    assert (tmp_path / "site" / "api" / "index.html").exists()


@pytest.mark.parametrize(("page", "index", "code"), EXAMPLES,
                         ids=[f"{page.name}-{index}" for page, index, _ in EXAMPLES])
def test_every_python_example_runs(page: Path, index: int, code: str, state_root: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, check=False,
                            env={**os.environ, "EXECDRIVER_ROOT": str(state_root),
                                 "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, f"{page.name} example {index}:\n{result.stderr}"
