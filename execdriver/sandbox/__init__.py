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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from execdriver.sandbox.cold import run, run_async
    from execdriver.sandbox.options import Limits
    from execdriver.sandbox.result import Result, SandboxError, SandboxFailed
    from execdriver.sandbox.template import Template

__all__ = ["Limits", "Result", "SandboxError", "SandboxFailed", "Template", "run", "run_async"]

# Each name from its module on first use: the sandbox command imports options.py alone.
_HOMES = {"run": "cold", "run_async": "cold", "Limits": "options", "Result": "result", "SandboxError": "result",
          "SandboxFailed": "result", "Template": "template"}


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module 'execdriver.sandbox' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"execdriver.sandbox.{_HOMES[name]}"), name)
