"""A judge: many submissions at once, each in its own container, with verdicts.

    python examples/judge.py

Each submission is Python source run on each test's input by
examples/sandbox.py's run_untrusted: accepted, wrong answer, time limit,
memory limit (OOM-killed) or runtime error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script too

from examples.sandbox import run_untrusted
from execdriver.native.driver import NativeDriver

TESTS = [(b"1 2\n", b"3\n"), (b"10 20\n", b"30\n"), (b"-5 5\n", b"0\n")]
SUBMISSIONS = {
    "correct": "a, b = map(int, input().split()); print(a + b)",
    "wrong": "a, b = map(int, input().split()); print(a - b)",
    "slow": "import time; time.sleep(10)",
    "greedy": "x = bytearray(512 << 20); print(len(x))",
    "crash": "raise SystemExit(3)",
}


def judge(source: str, driver: NativeDriver) -> str:
    for given, expected in TESTS:
        try:
            result = run_untrusted(source, driver=driver, stdin=given, timeout=2.0, memory=64 << 20)
        except subprocess.TimeoutExpired:
            return "time limit exceeded"
        if result.returncode == -9:
            return "memory limit exceeded"
        if result.returncode != 0:
            return f"runtime error ({result.returncode})"
        if result.stdout != expected:
            return "wrong answer"
    return "accepted"


def judge_all(submissions: dict[str, str], driver: NativeDriver) -> dict[str, str]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        verdicts = pool.map(lambda source: judge(source, driver), submissions.values())
        return dict(zip(submissions, verdicts, strict=True))


def main() -> None:
    with NativeDriver() as driver:
        for name, verdict in judge_all(SUBMISSIONS, driver).items():
            print(f"{name:10} {verdict}")


if __name__ == "__main__":
    main()
