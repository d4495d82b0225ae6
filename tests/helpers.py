"""Small helpers shared by the container tests."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from execdriver import Command, ExitStatus, Hooks, Pipes, ProcessConfig
from execdriver.driver import Driver


def shell(cid: str, rootfs: Path | str, script: str, **fields: Any) -> Command:
    process = fields.pop("process_config", None) or ProcessConfig(entrypoint="sh", arguments=["-c", script])
    return Command(id=cid, rootfs=str(rootfs), process_config=process, **fields)


def run(driver: Driver, command: Command, stdin: bytes | None = None,
        hooks: Hooks | None = None) -> tuple[ExitStatus, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    pipes = Pipes(stdin=io.BytesIO(stdin) if stdin is not None else None, stdout=out, stderr=err)
    status = driver.run(command, pipes, hooks)
    return status, out.getvalue().decode(errors="replace"), err.getvalue().decode(errors="replace")
