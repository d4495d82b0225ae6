"""create + start + wait + delete of `true`: execdriver's OCI CLI beside runc and crun.

    .venv/bin/python bench/lifecycle.py [--runs N] [--block N]

As an engine's shim does it: this process is a child subreaper, so the
container's init, orphaned when ``create`` exits, becomes its child and is
waited for. Every runtime uses the same bundle (runc's default config,
running ``true``). Medians, and the target: at most 0.6 of runc's time.

Beside them, in the same blocks, the floor under any CLI whose commands
are Python programs (bench/start.py's python_floor): three interpreter
starts that run nothing (``python3 -I -S -c pass``, as the installed
command starts; the table's "python" row), one each for create, start
and delete, plus crun's time less three of crun's own process starts
(``crun --version``, "crun-noop"). A target below that floor is out of
reach of our CLI, whatever its code.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import statistics
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.start import (
    CLI,
    call,
    floor_cases,
    fresh_cli,
    make_bundle,
    print_table,
    private_mount_namespace,
    python_floor,
    sample_in_blocks,
)


def become_subreaper() -> None:
    if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def cycle(command: list[str], bundle: Path, work: Path) -> Callable[[], None]:
    def go() -> None:
        container_id = f"b-{uuid.uuid4().hex[:10]}"
        pid_file = work / f"{container_id}.pid"
        call([*command, "create", "--bundle", str(bundle), "--pid-file", str(pid_file), container_id])
        pid = int(pid_file.read_text())
        call([*command, "start", container_id])
        os.waitpid(pid, 0)
        call([*command, "delete", container_id])
        pid_file.unlink()
    return go


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--block", type=int, default=10)
    args = parser.parse_args()
    fresh_cli()
    private_mount_namespace()
    become_subreaper()
    work = Path(tempfile.mkdtemp(prefix="execdriver-bench-"))
    try:
        bundle = make_bundle(work / "bundle")
        cases = {
            "execdriver": cycle([CLI, "--root", str(work / "execdriver")], bundle, work),
            "runc": cycle(["runc", "--root", str(work / "runc")], bundle, work),
            "crun": cycle(["crun", "--root", str(work / "crun")], bundle, work),
            **floor_cases(3),
        }
        for action in cases.values():
            action()
        samples = sample_in_blocks(cases, args.runs, args.block)
        print(f"create + start + wait + delete of `true`, {len(samples['runc'])} runs each, "
              f"in blocks of {max(1, min(args.block, args.runs))} (ms)")
        print_table(samples, 24)
        ours, runc = statistics.median(samples["execdriver"]), statistics.median(samples["runc"])
        print(f"  execdriver / runc: {ours / runc:.2f}   execdriver / crun: "
              f"{ours / statistics.median(samples['crun']):.2f}")
        print(f"  target <= 0.6 x runc: {'met' if ours <= 0.6 * runc else 'NOT met'}")
        floor = python_floor({name: statistics.median(values) for name, values in samples.items()})
        print(f"  floor of a Python CLI (3 interpreter starts + crun less its 3 starts): {floor:.2f} = "
              f"{floor / runc:.2f} x runc; the target is {'above' if 0.6 * runc > floor else 'below'} it")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
