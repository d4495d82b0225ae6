"""Sandboxes for untrusted code: one call, hard limits, and interpreters already loaded.

    from execdriver import sandbox

    result = sandbox.run(code="print(6 * 7)", memory=64 << 20, timeout=2)
    result.stdout  # b'42\\n'

``run`` makes a new sandbox for each call (cold.py); ``Template`` keeps
sandboxes of a pre-loaded interpreter waiting (template.py);
``run_async`` and ``Template.run_async`` are their asyncio twins. The
guide: docs/sandbox.md.
"""

from __future__ import annotations

from execdriver.sandbox.cold import run, run_async
from execdriver.sandbox.options import Limits
from execdriver.sandbox.result import Result, SandboxError, SandboxFailed
from execdriver.sandbox.template import Template

__all__ = ["Limits", "Result", "SandboxError", "SandboxFailed", "Template", "run", "run_async"]
