"""Exec latency of `true` into a running container: execdriver beside runc exec and crun exec.

    .venv/bin/python bench/exec.py [--runs N] [--block N]

Each runtime runs one container of the same bundle (runc's default
config, sleeping) and execs `true` into it, in blocks that rotate between
the runtimes; the API's Driver.exec is timed too, into a container of its
own. Medians, and the target: faster than `runc exec`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.start import CLI, call, fresh_cli, make_bundle, print_table, private_mount_namespace, sample_in_blocks
from execdriver import Command, Pipes, ProcessConfig
from execdriver.native.driver import NativeDriver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--block", type=int, default=10)
    args = parser.parse_args()
    fresh_cli()
    private_mount_namespace()
    work = Path(tempfile.mkdtemp(prefix="execdriver-bench-"))
    runtimes = {"execdriver": [CLI, "--root", str(work / "execdriver")],
                "runc": ["runc", "--root", str(work / "runc")],
                "crun": ["crun", "--root", str(work / "crun")]}
    container_id = f"bx-{uuid.uuid4().hex[:10]}"
    driver = NativeDriver(root=str(work / "api"))
    api_command = Command(id=f"{container_id}-api", rootfs=str(work / "bundle" / "rootfs"),
                          process_config=ProcessConfig(entrypoint="sleep", arguments=["600"]))
    import threading

    api_thread: threading.Thread | None = None
    try:
        bundle = make_bundle(work / "bundle", ["sleep", "600"])
        for command in runtimes.values():
            call([*command, "run", "-d", "--bundle", str(bundle), container_id])
        api_thread = threading.Thread(target=lambda: driver.run(api_command, Pipes()))
        api_thread.start()
        deadline = time.monotonic() + 10
        while not api_command.container_pid:
            assert time.monotonic() < deadline, "the API container did not start"
            time.sleep(0.01)
        true = ProcessConfig(entrypoint="true")
        cases: dict[str, Callable[[], object]] = {
            name: (lambda command=command: call([*command, "exec", container_id, "true"]))  # type: ignore[misc]
            for name, command in runtimes.items()
        }
        cases["execdriver API"] = lambda: driver.exec(api_command, true, Pipes())
        for action in cases.values():
            action()
        samples = sample_in_blocks(cases, args.runs, args.block)
        print(f"exec of `true` into a running container, {len(samples['runc'])} runs each, "
              f"in blocks of {max(1, min(args.block, args.runs))} (ms)")
        print_table(samples, 16)
        runc = statistics.median(samples["runc"])
        for name in ("execdriver", "execdriver API"):
            print(f"  {name} / runc: {statistics.median(samples[name]) / runc:.2f}   / crun: "
                  f"{statistics.median(samples[name]) / statistics.median(samples['crun']):.2f}")
        ours = statistics.median(samples["execdriver"])
        print(f"  target (CLI faster than runc exec): {'met' if ours < runc else 'NOT met'}")
    finally:
        for command in runtimes.values():
            subprocess.run([*command, "delete", "--force", container_id], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        if api_command.container_pid:
            driver.terminate(api_command)
        if api_thread is not None:
            api_thread.join(10)
        driver.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
