"""asyncio beside the blocking API: await a container, stream its output, watch its stats.

The driver's work is blocking system calls and a fork server round trip,
so each call runs in a worker thread (the fork server makes the driver safe
from threads); the event loop only waits. Output streams through a pipe
whose reading end the loop watches.

    async with AsyncDriver() as driver:
        container = await driver.start(Command(...))
        async for line in container.stdout:
            ...
        status = await container.wait()
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

from execdriver.api import Command, ExitStatus, Hooks, OOMEvents, Pipes, ProcessConfig, ResourceStats
from execdriver.native.driver import NativeDriver


class Container:
    """A running container: its output as asyncio streams, its exit as an awaitable."""

    def __init__(self, command: Command, stdout: asyncio.StreamReader, stderr: asyncio.StreamReader,
                 finished: asyncio.Future[ExitStatus]) -> None:
        self.command = command
        self.stdout = stdout
        self.stderr = stderr
        self._finished = finished

    @property
    def id(self) -> str:
        return self.command.id

    @property
    def pid(self) -> int:
        return self.command.container_pid

    async def wait(self) -> ExitStatus:
        """The exit status, once the container has exited and is cleaned up."""
        return await asyncio.shield(self._finished)


def _protocol_for(reader: asyncio.StreamReader) -> Callable[[], asyncio.StreamReaderProtocol]:
    return lambda: asyncio.StreamReaderProtocol(reader)


class AsyncDriver:
    """The native driver for asyncio programs; ``NativeDriver``'s options are passed on."""

    def __init__(self, **options: Any) -> None:
        self.driver = NativeDriver(**options)

    async def __aenter__(self) -> AsyncDriver:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await asyncio.to_thread(self.driver.close)

    async def run(self, command: Command, stdin: bytes | None = None) -> tuple[ExitStatus, bytes, bytes]:
        """Run to completion: (status, stdout, stderr), like ``subprocess.run(capture_output=True)``."""
        container = await self.start(command, stdin)
        out, err = await asyncio.gather(container.stdout.read(), container.stderr.read())
        return await container.wait(), out, err

    async def start(self, command: Command, stdin: bytes | None = None) -> Container:
        """Start ``command``; returns once its process runs (or raises why it could not start)."""
        import io

        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()
        streams = []
        writers = []
        for _ in range(2):
            read_end, write_end = os.pipe2(os.O_CLOEXEC)
            reader = asyncio.StreamReader()
            await loop.connect_read_pipe(_protocol_for(reader), os.fdopen(read_end, "rb", buffering=0))
            streams.append(reader)
            writers.append(os.fdopen(write_end, "wb", buffering=0))

        def mark_started() -> None:
            if not started.done():
                started.set_result(None)

        def on_start(_config: ProcessConfig, _pid: int, _oom: OOMEvents) -> None:
            loop.call_soon_threadsafe(mark_started)

        def run() -> ExitStatus:
            try:
                pipes = Pipes(stdin=io.BytesIO(stdin) if stdin is not None else None, stdout=writers[0],
                              stderr=writers[1])
                return self.driver.run(command, pipes, Hooks(start=on_start))
            finally:
                for writer in writers:
                    writer.close()  # end of file for the readers

        finished: asyncio.Future[ExitStatus] = asyncio.ensure_future(asyncio.to_thread(run))
        waiting: set[asyncio.Future[Any]] = {started, finished}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if finished in done and not started.done():
            finished.result()  # raises why it could not start
        return Container(command, streams[0], streams[1], finished)

    async def exec(self, command: Command, config: ProcessConfig, stdin: bytes | None = None,
                   ) -> tuple[int, bytes, bytes]:
        """Run ``config`` in the running container: (exit code, stdout, stderr)."""
        import io

        out, err = io.BytesIO(), io.BytesIO()
        pipes = Pipes(stdin=io.BytesIO(stdin) if stdin is not None else None, stdout=out, stderr=err)
        code = await asyncio.to_thread(self.driver.exec, command, config, pipes)
        return code, out.getvalue(), err.getvalue()

    async def kill(self, command: Command, signal: int = 15) -> None:
        await asyncio.to_thread(self.driver.kill, command, signal)

    async def stats(self, container_id: str, interval: float = 1.0) -> AsyncIterator[ResourceStats]:
        """A sample every ``interval`` seconds until the container stops running."""
        from execdriver.errors import NotRunningError

        while True:
            try:
                yield await asyncio.to_thread(self.driver.stats, container_id)
            except NotRunningError:
                return
            await asyncio.sleep(interval)
