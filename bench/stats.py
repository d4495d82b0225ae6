"""The cost of reading a container's stats, and of resource limits at start.

    .venv/bin/python bench/stats.py [--runs N]

1. One stats sample of a running container: execdriver's API
   (``driver.stats``), its CLI (``execdriver stats --json``), and
   ``runc events --stats`` on a runc container of the same bundle.
2. Start-to-exit of ``true`` through the API with memory, cpu and pids
   limits against the same without limits (every container has a cgroup;
   the limits add the writes of the limit files).

Medians of interleaved runs, and ratios.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.start import CLI, fresh_cli, make_bundle, sample_in_blocks
from execdriver import Command, Hooks, Pipes, ProcessConfig, Resources
from execdriver.native.driver import NativeDriver


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    fresh_cli()
    work = Path(tempfile.mkdtemp(prefix="execdriver-bench-"))
    runc_root = work / "runc"
    runc_id = f"b-{uuid.uuid4().hex[:10]}"
    ours_id = f"b-{uuid.uuid4().hex[:10]}"
    driver = NativeDriver(root=str(work / "state"))
    runner: threading.Thread | None = None
    try:
        bundle = make_bundle(work / "bundle", ["sleep", "600"])
        rootfs = str(bundle / "rootfs")
        subprocess.run(["runc", "--root", str(runc_root), "run", "-d", "--bundle", str(bundle), runc_id],
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = threading.Event()
        runner = threading.Thread(target=driver.run, args=(
            Command(id=ours_id, rootfs=rootfs, process_config=ProcessConfig(entrypoint="sleep", arguments=["600"])),
            Pipes(), Hooks(start=lambda _config, _pid, _oom: started.set())))
        runner.start()
        if not started.wait(10):
            raise SystemExit("the container did not start")

        stats_cases = {
            "execdriver API stats()": lambda: driver.stats(ours_id),
            "execdriver stats --json (CLI)": lambda: subprocess.run(
                [CLI, "--root", str(work / "state"), "stats", "--json", ours_id], check=True,
                stdout=subprocess.DEVNULL),
            "runc events --stats": lambda: subprocess.run(
                ["runc", "--root", str(runc_root), "events", "--stats", runc_id], check=True,
                stdout=subprocess.DEVNULL),
        }
        samples = sample_in_blocks(stats_cases, args.runs, 1)
        print(f"one stats sample of a running container, {args.runs} runs each, interleaved (ms)")
        for name, values in samples.items():
            print(f"  {name:34} {median(values):8.3f}")
        runc_ms = median(samples["runc events --stats"])
        print(f"  API / runc: {median(samples['execdriver API stats()']) / runc_ms:.3f}   "
              f"CLI / runc: {median(samples['execdriver stats --json (CLI)']) / runc_ms:.2f}")

        def start(resources: Resources | None) -> None:
            driver.run(Command(id=f"b-{uuid.uuid4().hex[:10]}", rootfs=rootfs, resources=resources,
                               process_config=ProcessConfig(entrypoint="true")), Pipes())

        limits = Resources(memory=256 << 20, memory_swap=256 << 20, cpu_quota=50000, cpu_period=100000,
                           pids_limit=100)
        start_cases: dict[str, Callable[[], None]] = {"no limits": lambda: start(None),
                                                      "memory+cpu+pids limits": lambda: start(limits)}
        for _ in range(3):
            for action in start_cases.values():
                action()
        starts = sample_in_blocks(start_cases, args.runs, 1)
        print(f"\nAPI start-to-exit of `true`, {args.runs} runs each, interleaved (ms)")
        for name, values in starts.items():
            print(f"  {name:34} {median(values):8.3f}")
        added = median(starts["memory+cpu+pids limits"]) - median(starts["no limits"])
        print(f"  added by the limits: {added:+.3f} ms")
    finally:
        subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", runc_id], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        driver.clean(ours_id)
        if runner is not None:
            runner.join(10)
        driver.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
