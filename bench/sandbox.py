"""Sandboxes for untrusted code, every row side by side in one run (issue 21's targets).

    .venv/bin/python bench/sandbox.py [--requests N] [--concurrency N] [--cold N]

Rows, for ``print(numpy.__version__)``:

* a numpy Template: bursts of 8 requests at once on a full pool, request
  to result (p50, p99); then N requests from 8 threads, each sending its
  next as soon as it has its answer: sandboxes a second, refills included;
* a cold ``sandbox.run`` (a new container, the interpreter started and
  numpy imported in it);
* ``podman run`` of the host's root as its image (``--rootfs /:O``, an
  overlay: nothing written reaches the host), with the same memory and
  pids limits and no network;
* ``bwrap`` (bubblewrap) with the same namespaces: it has no memory, CPU or
  pids limit of its own.

Then a bare ``sandbox.run(["true"])`` against the API's start of ``true``
(NativeDriver.run), and what a Template costs: the zygote's PSS, and each
waiting sandbox's (shared pages divided among their sharers).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from execdriver import Command, Pipes, ProcessConfig, sandbox  # noqa: E402
from execdriver.native.driver import NativeDriver  # noqa: E402
from execdriver.sandbox import Template  # noqa: E402

CODE = "print(numpy.__version__)"
COLD_CODE = "import numpy; print(numpy.__version__)"
MiB = 1 << 20


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def row(name: str, times: list[float], extra: str = "") -> None:
    print(f"{name:<44} p50 {percentile(times, 0.5):8.2f}  p99 {percentile(times, 0.99):8.2f}  ms  {extra}")


def timed_request(template: Template) -> float:
    """One request of CODE, request to result, in milliseconds."""
    begin = time.perf_counter()
    result = template.run(CODE, timeout=10)
    elapsed = (time.perf_counter() - begin) * 1000
    if result.returncode != 0:
        raise SystemExit(f"template run failed: {result}")
    return elapsed


def template_bursts(template: Template, rounds: int, concurrency: int) -> list[float]:
    """``concurrency`` requests at once, ``rounds`` times, each burst on a full pool: request to result."""
    times: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(concurrency + 1)

    def worker() -> None:
        for _ in range(rounds):
            barrier.wait()
            elapsed = timed_request(template)
            with lock:
                times.append(elapsed)
            barrier.wait()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for _ in range(rounds):
        template.wait_full(30)
        time.sleep(0.05)  # and the last burst's sandboxes killed and gone: a burst on a quiet pool
        barrier.wait()  # go
        barrier.wait()  # all answered
    for thread in threads:
        thread.join()
    return times


def template_sustained(template: Template, requests: int, concurrency: int) -> tuple[list[float], float]:
    """``requests`` from ``concurrency`` threads, each sending its next as soon as it has its answer."""
    times: list[float] = []
    lock = threading.Lock()
    left = [requests]

    def worker() -> None:
        while True:
            with lock:
                if not left[0]:
                    return
                left[0] -= 1
            elapsed = timed_request(template)
            with lock:
                times.append(elapsed)

    begin = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return times, requests / (time.perf_counter() - begin)


def timed(action: object, count: int) -> list[float]:
    times = []
    for _ in range(count):
        begin = time.perf_counter()
        action()  # type: ignore[operator]
        times.append((time.perf_counter() - begin) * 1000)
    return times


def rollup(pid: int) -> dict[str, int]:
    """/proc/PID/smaps_rollup, in bytes."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) == 3 and fields[2] == "kB":
                values[fields[0].rstrip(":")] = int(fields[1]) * 1024
    return values


def pss(pid: int) -> int:
    return rollup(pid)["Pss"]


def template_memory(driver: NativeDriver, size: int) -> tuple[int, float, float]:
    """A numpy template of ``size`` waiting sandboxes: the PSS of the zygote and its sandboxes together,
    and each waiting sandbox's PSS and private (unshared) memory, averaged."""
    template = Template(preload="import numpy", size=size, driver=driver)
    try:
        template.wait_full(30)
        time.sleep(0.3)
        waiting = template.waiting_pids()
        sandboxes = [rollup(pid) for pid in waiting]
        total = pss(driver.store.load_running(template.id).pid) + sum(each["Pss"] for each in sandboxes)
        return (total, statistics.mean(each["Pss"] for each in sandboxes),
                statistics.mean(each["Private_Dirty"] + each["Private_Clean"] for each in sandboxes))
    finally:
        template.close()




def podman_command(work: Path) -> list[str]:
    (work / "containers.conf").write_text(
        '[containers]\nnetns = "none"\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
        '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n')
    (work / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\nrunroot = "{work}/runroot"\ngraphroot = "{work}/root"\n')
    os.environ["CONTAINERS_CONF"] = str(work / "containers.conf")
    os.environ["CONTAINERS_STORAGE_CONF"] = str(work / "storage.conf")
    return ["podman", "--root", str(work / "root"), "--runroot", str(work / "runroot"), "--tmpdir", str(work / "tmp"),
            "--runtime", "runc", "run", "--rm", "--network", "none", "--memory", "256m", "--pids-limit", "64",
            "--user", "65534", "--rootfs", "/:O", sys.executable, "-I", "-c", COLD_CODE]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--cold", type=int, default=20)
    options = parser.parse_args()
    state = tempfile.mkdtemp(prefix="execdriver-bench-sandbox-")
    work = Path(tempfile.mkdtemp(prefix="execdriver-bench-podman-"))
    try:
        with NativeDriver(root=state) as driver:
            begin = time.perf_counter()
            template = Template(preload="import numpy", size=2 * options.concurrency, driver=driver)
            made = time.perf_counter() - begin
            try:
                template.run(CODE)
                template.wait_full(30)  # the pool full before the clock starts
                zygote = pss(driver.store.load_running(template.id).pid)
                bursts = template_bursts(template, options.rounds, options.concurrency)
                template.wait_full(30)
                sustained, rate = template_sustained(template, options.requests, options.concurrency)
            finally:
                template.close()
            print(f"print(numpy.__version__): the template {options.concurrency} at a time, the others one at a time")
            row(f"numpy Template, bursts of {options.concurrency} on a full pool", bursts)
            row(f"numpy Template, sustained, {options.concurrency} threads", sustained, f"{rate:6.1f} sandboxes/s")
            cold = timed(lambda: sandbox.run(code=COLD_CODE, python=sys.executable, driver=driver, check=True),
                         options.cold)
            row("cold sandbox.run", cold)
            if shutil.which("podman"):
                command = podman_command(work)
                podman = timed(lambda: subprocess.run(command, check=True, capture_output=True),
                               max(3, options.cold // 4))
                row("podman run --rootfs /:O", podman)
            if shutil.which("bwrap"):
                command = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
                           "--unshare-all", "--die-with-parent", "--uid", "65534", "--gid", "65534",
                           sys.executable, "-I", "-c", COLD_CODE]
                bwrap = timed(lambda: subprocess.run(command, check=True, capture_output=True), options.cold)
                row("bwrap (no memory, CPU or pids limit)", bwrap)

            def api_true() -> None:
                command = Command(id=f"t-{uuid.uuid4().hex[:10]}", rootfs="/", readonly_rootfs=True,
                                  process_config=ProcessConfig(entrypoint="true"))
                driver.run(command, Pipes())

            timed(api_true, 5)
            api, bare = [], []
            for _ in range(options.cold):  # interleaved: the host's drift falls on both
                api += timed(api_true, 1)
                bare += timed(lambda: sandbox.run(["true"], driver=driver), 1)
            print()
            row("API start of true (NativeDriver.run)", api)
            row("sandbox.run(['true'])", bare,
                f"x{percentile(bare, 0.5) / percentile(api, 0.5):.2f} the API's (target <= 1.5)")
            print()
            # What a waiting sandbox adds: the PSS of a template with 16 waiting, less that of one with 1.
            one, _, _ = template_memory(driver, 1)
            many, each_pss, each_private = template_memory(driver, 16)
            added = (many - one) / 15
            print(f"template made in {made * 1000:.0f} ms (preload done, {options.concurrency * 2} sandboxes made); "
                  f"its zygote: PSS {zygote / MiB:.1f} MiB")
            print(f"a waiting sandbox adds {added / MiB:.2f} MiB (PSS of zygote and sandboxes, 16 waiting less 1 "
                  f"waiting, over 15); its own PSS {each_pss / MiB:.2f} MiB, of which private "
                  f"{each_private / MiB:.2f} MiB (the rest: its share of the zygote's pages, shared by 17)")
            p50, p99 = percentile(bursts, 0.5), percentile(bursts, 0.99)
            print(f"verdicts: template p50 {p50:.2f} <= 3 ms: {p50 <= 3}; p99 {p99:.2f} <= 10 ms: {p99 <= 10}; "
                  f"{rate:.0f}/s >= 100: {rate >= 100}; added per waiting sandbox {added / MiB:.2f} <= 2 MiB: "
                  f"{added <= 2 * MiB}")
    finally:
        shutil.rmtree(state, ignore_errors=True)
        subprocess.run(["umount", "-R", str(work)], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)



if __name__ == "__main__":
    main()
