"""Every start path of issue 8, beside runc and crun, in one run: medians, ratios, verdicts, a PNG.

    .venv/bin/python bench/perf.py [--runs N] [--block N] [--png docs/start-latency.png]

Rows (targets from the issue):
  1. CLI `run` of `true`, all namespaces and cgroups         <= 1.5 x crun
  2. create + start + wait + delete                          <= 0.6 x runc
  3. API start-to-exit of `true`, in process                 <= 1.5 x the raw clone floor
  4. API warm start from a pool, to the user's first instruction  < 1 ms
  5. 50 containers, 8 at a time (as xargs -P8), total        <= crun
  6. exec of `true` into a running container                 faster than crun
  7. CLI peak RSS                                            <= runc

Rows 1, 2, 5 and 6 run CLI commands, and each command of ours is a Python
program. Below each, from the same run, its floor (bench/start.py's
python_floor): as many interpreter starts running nothing (``python3 -I
-S -c pass``, as the installed command starts) as the row has commands,
plus crun's time less as many of crun's own process starts (``crun
--version``), which leaves the kernel's work for the containers as fast
as C has it done. A target below its floor is out of reach of a CLI of
Python commands, whatever its code.

The raw clone floor is one clone() with every namespace flag, a bind of the
rootfs, pivot_root and exec of `true`, from this single-threaded process:
what no runtime can beat on this machine. Row 4 times Driver.run from the
call to the moment the user's program has exec'd (the init's status pipe
closes on exec), with the pool's sandboxes prepared beforehand. It runs in
a private mount namespace where /dev/null hides cgroup.controllers (crun
1.8 refuses this hybrid layout otherwise); the host is left as it was.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.lifecycle import become_subreaper, cycle
from bench.start import (
    CLI,
    FLOOR_COMMANDS,
    call,
    floor_cases,
    fresh_cli,
    make_bundle,
    private_mount_namespace,
    python_floor,
    sample_in_blocks,
)
from execdriver import Command, Pipes, ProcessConfig
from execdriver.linux import syscalls
from execdriver.native.driver import NativeDriver

RUNTIMES = ("execdriver", "runc", "crun")


def base(runtime: str, work: Path) -> list[str]:
    return [CLI if runtime == "execdriver" else runtime, "--root", str(work / runtime)]


def raw_clone_floor(rootfs: str) -> float:
    """One clone with every namespace, a bound rootfs, pivot_root, exec true: ms to exit."""
    flags = (syscalls.CLONE_NEWNS | syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWIPC | syscalls.CLONE_NEWPID
             | syscalls.CLONE_NEWNET)
    start = time.perf_counter()
    pid, pidfd = syscalls.clone(flags)
    if pid == 0:
        try:
            syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
            syscalls.mount(rootfs, rootfs, None, syscalls.MS_BIND | syscalls.MS_REC)
            os.chdir(rootfs)
            syscalls.pivot_root(".", ".")
            syscalls.umount2(".", syscalls.MNT_DETACH)
            os.execv("/bin/true", ["true"])
        finally:
            os._exit(127)
    os.waitpid(pid, 0)
    os.close(pidfd)
    return (time.perf_counter() - start) * 1000


def peak_rss(argv: list[str]) -> float:
    """MiB of the command's peak resident set, as GNU time reports it (a fork of this big
    interpreter would count its own pages before the exec)."""
    result = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    return int(result.stderr.strip().splitlines()[-1]) / 1024


def fifty(runtime: str, work: Path, bundle: Path) -> float:
    """50 `run`s of `true`, 8 at a time: total ms (or 50 of a floor's no-op commands)."""
    def one(_: int) -> None:
        if runtime in FLOOR_COMMANDS:
            call(FLOOR_COMMANDS[runtime])
        else:
            call([*base(runtime, work), "run", "--bundle", str(bundle), f"f-{uuid.uuid4().hex[:10]}"])

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(50)))
    return (time.perf_counter() - start) * 1000


class ExecTarget:
    """A sleeping container of each runtime to exec `true` into."""

    def __init__(self, runtime: str, work: Path, bundle: Path) -> None:
        self.command = base(runtime, work)
        self.id = f"e-{uuid.uuid4().hex[:10]}"
        call([*self.command, "run", "-d", "--bundle", str(bundle), self.id])

    def exec(self) -> None:
        call([*self.command, "exec", self.id, "true"])

    def close(self) -> None:
        subprocess.run([*self.command, "delete", "--force", self.id], capture_output=True, check=False)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def floor_row(medians: dict[str, float], target: float) -> tuple[str, str, str, str, str]:
    """The floor under a CLI row (medians of "python", "crun" and "crun-noop"), and where its target lies."""
    floor = python_floor(medians)
    where = "above it" if target > floor else "BELOW it: out of reach of Python commands"
    return ("  floor of a Python CLI", f"{floor:.2f}", "", "", f"target {target:.2f} is {where}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("--png", default="", help="write the latency distributions of row 1 here")
    args = parser.parse_args()
    fresh_cli()
    private_mount_namespace()
    become_subreaper()
    work = Path(tempfile.mkdtemp(prefix="execdriver-perf-"))
    rows: list[tuple[str, str, str, str, str]] = []
    try:
        bundle = make_bundle(work / "bundle")
        sleeper = make_bundle(work / "sleeper", ["sleep", "600"])
        rootfs = str(bundle / "rootfs")

        # 1. CLI run
        def cli_run(name: str) -> Callable[[], None]:
            return lambda: call([*base(name, work), "run", "--bundle", str(bundle), f"r-{uuid.uuid4().hex[:10]}"])

        runs = {**{name: cli_run(name) for name in RUNTIMES}, **floor_cases(1)}
        for run in runs.values():
            run()
        run_samples = sample_in_blocks(runs, args.runs, args.block, warmup=1)
        run_ms = {name: statistics.median(values) for name, values in run_samples.items()}
        rows.append(("CLI run of true", *_three(run_ms),
                     f"x{run_ms['execdriver'] / run_ms['crun']:.2f} crun (<= 1.5): "
                     f"{verdict(run_ms['execdriver'] <= 1.5 * run_ms['crun'])}"))
        rows.append(floor_row(run_ms, 1.5 * run_ms["crun"]))

        # 2. lifecycle
        cycles = {**{name: cycle(base(name, work), bundle, work) for name in RUNTIMES}, **floor_cases(3)}
        for go in cycles.values():
            go()
        life = {name: statistics.median(values)
                for name, values in sample_in_blocks(cycles, args.runs, args.block).items()}
        rows.append(("create+start+wait+delete", *_three(life),
                     f"x{life['execdriver'] / life['runc']:.2f} runc (<= 0.6): "
                     f"{verdict(life['execdriver'] <= 0.6 * life['runc'])}"))
        rows.append(floor_row(life, 0.6 * life["runc"]))

        # 3. API start-to-exit, in process, and the raw clone floor
        with NativeDriver(root=str(work / "api")) as driver:
            def api() -> None:
                command = Command(id=f"a-{uuid.uuid4().hex[:8]}", rootfs=rootfs, seccomp_profile="unconfined",
                                  process_config=ProcessConfig(entrypoint="true"))
                driver.run(command, Pipes())

            for _ in range(5):
                api()
            api_ms = statistics.median(sample_in_blocks({"api": api}, args.runs, args.runs)["api"])
            floor = statistics.median([raw_clone_floor(rootfs) for _ in range(args.runs)])
            rows.append(("API start-to-exit (no seccomp)", f"{api_ms:.2f}", f"floor {floor:.2f}", "",
                         f"x{api_ms / floor:.2f} floor (<= 1.5): {verdict(api_ms <= 1.5 * floor)}"))

            # 4. warm pool
            pool_ms = _warm_start(driver, rootfs, args.runs)
            rows.append(("API warm start, to exec", f"{pool_ms:.2f}", "", "", f"< 1 ms: {verdict(pool_ms < 1)}"))

        # 5. fifty, 8 at a time
        totals = {name: statistics.median([fifty(name, work, bundle) for _ in range(3)])
                  for name in (*RUNTIMES, *FLOOR_COMMANDS)}
        rows.append(("50 runs, 8 at a time (total)", *_three(totals),
                     f"x{totals['execdriver'] / totals['crun']:.2f} crun (<= 1): "
                     f"{verdict(totals['execdriver'] <= totals['crun'])}"))
        rows.append(floor_row(totals, totals["crun"]))

        # 6. exec
        targets = {name: ExecTarget(name, work, sleeper) for name in RUNTIMES}
        try:
            for target in targets.values():
                target.exec()
            execs = {name: statistics.median(values) for name, values in sample_in_blocks(
                {**{name: target.exec for name, target in targets.items()}, **floor_cases(1)},
                args.runs, args.block).items()}
        finally:
            for target in targets.values():
                target.close()
        rows.append(("exec of true", *_three(execs),
                     f"x{execs['execdriver'] / execs['crun']:.2f} crun (< 1): "
                     f"{verdict(execs['execdriver'] < execs['crun'])}"))
        rows.append(floor_row(execs, execs["crun"]))

        # 7. peak RSS of `run`
        rss = {name: statistics.median([peak_rss([*base(name, work), "run", "--bundle", str(bundle),
                                                  f"m-{uuid.uuid4().hex[:10]}"]) for _ in range(5)])
               for name in RUNTIMES}
        rows.append(("CLI peak RSS (MiB)", *_three(rss),
                     f"x{rss['execdriver'] / rss['runc']:.2f} runc (<= 1): "
                     f"{verdict(rss['execdriver'] <= rss['runc'])}"))

        widths = (30, 12, 12, 12)
        print(f"{'row':{widths[0]}} {'execdriver':>{widths[1]}} {'runc':>{widths[2]}} {'crun':>{widths[3]}}  verdict")
        for name, ours, runc, crun, judged in rows:
            print(f"{name:{widths[0]}} {ours:>{widths[1]}} {runc:>{widths[2]}} {crun:>{widths[3]}}  {judged}")
        print("(milliseconds, medians; one machine, one run: compare ratios, not absolute times)")
        if args.png:
            from bench.png import distributions

            distributions("cli run of true: execdriver, runc, crun",
                          {name: run_samples[name] for name in RUNTIMES}, args.png)
            print(f"wrote {args.png}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _three(values: dict[str, float]) -> tuple[str, str, str]:
    return tuple(f"{values[name]:.2f}" for name in RUNTIMES)  # type: ignore[return-value]


def _warm_start(driver: NativeDriver, rootfs: str, runs: int) -> float:
    """ms from Driver.run to the user's program exec'd (the start hook), taking a sandbox from the pool."""
    from execdriver import Hooks, OOMEvents

    template = Command(id="pool", rootfs=rootfs, seccomp_profile="unconfined",
                       process_config=ProcessConfig(entrypoint="true"))
    driver.warm(template, 1)
    times: list[float] = []
    for _ in range(runs):
        deadline = time.monotonic() + 10
        while not driver._pool or not any(driver._pool._idle.values()):  # refilled
            assert time.monotonic() < deadline
            time.sleep(0.005)
        stamps: list[float] = []

        def on_start(_config: ProcessConfig, _pid: int, _oom: OOMEvents, out: list[float] = stamps) -> None:
            out.append(time.perf_counter())

        command = Command(id=f"w-{uuid.uuid4().hex[:8]}", rootfs=rootfs, seccomp_profile="unconfined",
                          process_config=ProcessConfig(entrypoint="true"))
        begin = time.perf_counter()
        driver.run(command, Pipes(), Hooks(start=on_start))
        times.append((stamps[0] - begin) * 1000)
    driver.warm(template, 0)
    return statistics.median(times)


if __name__ == "__main__":
    main()
