"""Crash points: the crash-safety tests kill the runtime at each step of a lifecycle.

``EXECDRIVER_CRASH_AT=<point>`` in the environment makes the process that
reaches ``point(name)`` with that name SIGKILL itself there, as an engine
restart or an OOM kill would: what it leaves is what ``delete --force``
and ``Driver.clean`` must remove. Unset, a point costs one comparison.
"""

from __future__ import annotations

import os

_AT = os.environ.get("EXECDRIVER_CRASH_AT", "")


def point(name: str) -> None:
    if _AT and name == _AT:
        os.kill(os.getpid(), 9)
