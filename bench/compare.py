"""Two versions of execdriver's API start, interleaved: is a change faster?

    .venv/bin/python bench/compare.py BASE [NEW] [--rounds N] [--block N] [--profile P]

BASE and NEW are git revisions of this repository (NEW defaults to the
working tree). Each is exported to a temporary directory, its frozen module
file built, and driven by a worker process of its own that stays alive:
the workers take turns, ``--block`` starts of ``true`` each, for
``--rounds`` rounds, the order reversed every round. This host's speed
drifts by tens of percent within minutes; blocks of a few starts put that
drift on both versions alike, which separate runs of bench/start.py
cannot. Prints the median, mean, p10 and p90 of each, and the difference.
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def export(revision: str, target: Path) -> Path:
    """The tree of ``revision`` (None: the working tree, committed or not) with its frozen file built."""
    target.mkdir(parents=True)
    if revision:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", revision], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    else:
        files = subprocess.run(["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard"], check=True,
                               capture_output=True, text=True).stdout.split()
        for name in files:
            if (REPO / name).is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, target / name)
    subprocess.run([sys.executable, "-m", "execdriver.freeze"], cwd=target, check=True, stdout=subprocess.DEVNULL)
    return target


def serve(tree: str, rootfs: str, profile: str) -> None:
    """A worker: on each line N from stdin, N timed starts; prints their milliseconds on one line."""
    sys.path.insert(0, tree)
    from execdriver import Command, Pipes, ProcessConfig
    from execdriver.native.driver import NativeDriver

    state = tempfile.mkdtemp(prefix="execdriver-compare-")
    try:
        with NativeDriver(root=state) as driver:
            def once() -> float:
                command = Command(id=f"c-{uuid.uuid4().hex[:10]}", rootfs=rootfs, seccomp_profile=profile,
                                  process_config=ProcessConfig(entrypoint="true"))
                begin = time.perf_counter()
                driver.run(command, Pipes())
                return (time.perf_counter() - begin) * 1000

            for _ in range(5):
                once()
            for line in sys.stdin:
                count = int(line)
                if not count:
                    break
                once()  # after the other worker's turn
                print(" ".join(f"{once():.4f}" for _ in range(count)), flush=True)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("base", nargs="?", default="", help="git revision of the first version")
    parser.add_argument("new", nargs="?", default="", help="git revision of the second (default: working tree)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--block", type=int, default=15, help="starts per turn")
    parser.add_argument("--profile", default="", help="seccomp_profile of the Commands ('' is Docker's default)")
    parser.add_argument("--serve", nargs=2, metavar=("TREE", "ROOTFS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], args.serve[1], args.profile)
        return
    if not args.base:
        parser.error("BASE: a git revision to compare against")
    sys.path.insert(0, str(REPO))
    from tests.images import make_busybox_rootfs

    work = Path(tempfile.mkdtemp(prefix="execdriver-compare-"))
    workers: dict[str, subprocess.Popen[str]] = {}
    try:
        rootfs = make_busybox_rootfs(work / "rootfs")
        names = {"base": args.base, "new": args.new or "working tree"}
        for name, revision in (("base", args.base), ("new", args.new)):
            tree = export(revision, work / name)
            workers[name] = subprocess.Popen(
                [sys.executable, __file__, "--serve", str(tree), str(rootfs), "--profile", args.profile],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        samples: dict[str, list[float]] = {name: [] for name in workers}
        for round_ in range(args.rounds):
            for name in (list(workers) if round_ % 2 == 0 else list(reversed(workers))):
                worker = workers[name]
                assert worker.stdin is not None and worker.stdout is not None
                worker.stdin.write(f"{args.block}\n")
                worker.stdin.flush()
                samples[name] += [float(value) for value in worker.stdout.readline().split()]
        print(f"API start-to-exit of `true`, {args.rounds} rounds of {args.block} starts each (ms)")
        for name, values in samples.items():
            deciles = statistics.quantiles(values, n=10)
            print(f"{name:5} {names[name]:>14}  median {statistics.median(values):6.3f}  "
                  f"mean {statistics.fmean(values):6.3f}  p10 {deciles[0]:6.3f}  p90 {deciles[-1]:6.3f}")
        change = statistics.median(samples["new"]) - statistics.median(samples["base"])
        print(f"new - base: {change:+.3f} ms ({change / statistics.median(samples['base']):+.1%})")
    finally:
        for worker in workers.values():
            if worker.stdin is not None and worker.poll() is None:
                worker.stdin.write("0\n")
                worker.stdin.close()
            worker.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
