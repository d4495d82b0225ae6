"""What a sandbox run gives back, in subprocess's shapes: a result, and the error ``check`` raises."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field

from execdriver.errors import ExecDriverError


class SandboxError(ExecDriverError):
    """The sandbox could not be made or run (not: its program failed; that is a Result)."""


@dataclass
class Result:
    """A finished sandbox, as subprocess.CompletedProcess with what a sandbox adds.

    ``returncode`` is negative for a signal, as subprocess's (-9 for a
    time-out or an OOM kill, which ``timed_out`` and ``oom_killed`` tell
    apart). ``wall_time`` and ``cpu_time`` are seconds; ``cpu_time`` and
    ``peak_memory`` (bytes) count every process of the sandbox, from its
    cgroup.
    """

    args: list[str]
    returncode: int
    stdout: bytes = b""
    stderr: bytes = b""
    timed_out: bool = False
    oom_killed: bool = False
    wall_time: float = 0.0
    cpu_time: float = 0.0
    peak_memory: int = 0
    id: str = field(default="", repr=False)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.oom_killed

    def check_returncode(self) -> None:
        """Raise SandboxFailed unless the program exited 0 within its limits."""
        if not self.ok:
            raise SandboxFailed(self)


class SandboxFailed(subprocess.CalledProcessError):
    """A sandboxed program failed, ran out of time or of memory (``check=True``); ``result`` has it all."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.returncode, result.args, result.stdout, result.stderr)
        self.result = result

    def __str__(self) -> str:
        if self.result.timed_out:
            return f"sandbox {self.result.id}: {self.cmd!r} timed out after {self.result.wall_time:.3f} s"
        if self.result.oom_killed:
            return f"sandbox {self.result.id}: {self.cmd!r} was killed for exceeding its memory limit"
        return f"sandbox {self.result.id}: {super().__str__()}"
