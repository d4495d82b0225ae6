"""The asyncio API: await exits, stream output as it comes, watch stats, run many at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from execdriver import Command, ContainerError, ProcessConfig
from execdriver.aio import AsyncDriver
from tests.helpers import shell


def test_run_stream_exec_stats_and_errors(busybox_rootfs: Path, state_root: Path, cid: str) -> None:
    async def main() -> None:
        async with AsyncDriver(root=str(state_root)) as driver:
            status, out, err = await driver.run(shell(cid, busybox_rootfs, "cat; echo oops >&2; exit 4"),
                                                stdin=b"in\n")
            assert (status.exit_code, out, err) == (4, b"in\n", b"oops\n")

            # Output arrives while the container still runs.
            script = "echo one; read go; echo two"
            command = shell(f"{cid}-s", busybox_rootfs, script)
            container = await driver.start(command, stdin=b"go\n")
            assert await asyncio.wait_for(container.stdout.readline(), 10) == b"one\n"
            assert await container.stdout.readline() == b"two\n"
            assert (await container.wait()).exit_code == 0

            sleeper = shell(f"{cid}-z", busybox_rootfs, "sleep 30")
            running = await driver.start(sleeper)
            code, out, _ = await driver.exec(sleeper, ProcessConfig(entrypoint="hostname"))
            assert code == 0 and out
            samples = []
            async for sample in driver.stats(sleeper.id, interval=0.05):
                samples.append(sample)
                if len(samples) == 2:
                    await driver.kill(sleeper, 9)
            assert len(samples) >= 2 and (samples[0].cgroup_stats or {})["pids_stats"]["current"] >= 1
            assert (await running.wait()).exit_code == 137

            with pytest.raises(ContainerError, match="no such file"):
                await driver.start(Command(id=f"{cid}-x", rootfs=str(busybox_rootfs),
                                           process_config=ProcessConfig(entrypoint="/nope")))

            # Many at once, on one event loop.
            results = await asyncio.gather(*(driver.run(shell(f"{cid}-{i}", busybox_rootfs, f"echo {i}"))
                                             for i in range(10)))
            assert [out for _, out, _ in results] == [f"{i}\n".encode() for i in range(10)]

    asyncio.run(main())
