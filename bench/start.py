"""Start-to-exit of ``true``: execdriver's API and CLI beside runc and crun.

    .venv/bin/python bench/start.py [--runs N]

Every runtime runs ``true`` on the same busybox bundle. By default each is
measured as hyperfine measures a command (the method of the figures in the
shared notes): three warm-up runs, then ``--runs`` back to back. ``--block
N`` rotates the runtimes every N runs instead, so machine noise hits all
alike; ``--block 1`` interleaves single runs, which leaves every runtime
cold and is slower for all. The script prints medians and ratios, and the
issue's targets with a verdict. It runs in a private
mount namespace of its own, where /dev/null is bound over
/sys/fs/cgroup/unified/cgroup.controllers: crun 1.8 refuses this machine's
hybrid cgroup layout otherwise. The host is left untouched.

All three make the same namespaces (runc's default spec: pid, ipc, uts,
mount, network) and a cgroup in every v1 hierarchy. runc's default spec
has no seccomp filter; execdriver's API and CLI load Docker's default
profile (0.3-0.4 ms of each start here).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from execdriver import Command, Pipes, ProcessConfig, freeze
from execdriver.linux import syscalls
from execdriver.native.driver import NativeDriver
from tests.images import make_busybox_rootfs

CLI = str(Path(sys.executable).parent / "execdriver")
# The interpreter the installed command starts (its shebang), and how: what
# every CLI command costs before the first line of ours runs.
BARE_INTERPRETER = [str(Path(sys.executable).parent / "python3"), "-I", "-S", "-c", "pass"]
# crun's own process start (dynamic loading, glibc's start-up), without a container.
CRUN_NOOP = ["crun", "--version"]
# The commands of a CLI row's floor (python_floor), by the names of their cases.
FLOOR_COMMANDS = {"python": BARE_INTERPRETER, "crun-noop": CRUN_NOOP}


def fresh_cli() -> None:
    """The command as scripts/setup.sh leaves it, from the sources as they are now: frozen, compiled."""
    freeze.build(launcher=(str(Path(__file__).resolve().parent.parent / "bin" / "execdriver"), CLI))


def private_mount_namespace() -> None:
    syscalls.unshare(syscalls.CLONE_NEWNS)
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    controllers = "/sys/fs/cgroup/unified/cgroup.controllers"
    if os.path.exists(controllers):
        syscalls.mount("/dev/null", controllers, None, syscalls.MS_BIND)


def make_bundle(directory: Path, args: list[str] | None = None) -> Path:
    """A runc bundle of a busybox rootfs running ``args`` (default: true)."""
    make_busybox_rootfs(directory / "rootfs")
    subprocess.run(["runc", "spec"], cwd=directory, check=True)
    config = json.loads((directory / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = args or ["true"]
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def make_engine_bundle(directory: Path, rootfs: Path) -> Path:
    """A bundle of ``rootfs`` (true) with what Docker adds to runc's default config (shared notes,
    engines.md): its seccomp profile (the host's default, as execdriver's API reads it), sysctls,
    an open-files limit, /etc binds, a /dev/shm tmpfs, limits and device rules."""
    from execdriver.linux import seccomp

    directory.mkdir()
    subprocess.run(["runc", "spec"], cwd=directory, check=True)
    config = json.loads((directory / "config.json").read_text())
    process = config["process"]
    process.update(terminal=False, args=["true"], oomScoreAdj=0)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]  # (the machine may not raise it)
    process["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": hard, "soft": hard}]
    config["root"] = {"path": str(rootfs), "readonly": False}
    with open(seccomp.DEFAULT_PROFILE, encoding="utf-8") as handle:
        docker = seccomp.docker_default(json.load(handle))
    linux = config["linux"]
    linux["seccomp"] = seccomp.docker_to_oci(docker, set(process["capabilities"]["bounding"]))
    linux["sysctl"] = {"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ping_group_range": "0 2147483647"}
    linux["resources"] = {"devices": [{"allow": False, "access": "rwm"},
                                      {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}],
                          "memory": {"limit": 256 << 20}, "pids": {"limit": 100}, "cpu": {"shares": 512}}
    for name in ("hosts", "hostname", "resolv.conf"):
        (directory / name).write_text("127.0.0.1 localhost\n")
        config["mounts"].append({"destination": f"/etc/{name}", "type": "bind", "source": str(directory / name),
                                 "options": ["rbind", "rprivate"]})
    config["mounts"].append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]})
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def call(argv: list[str]) -> None:
    """Run a CLI step of a benchmark; its output is not the point."""
    subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)


def starts(argv: list[str], count: int) -> Callable[[], None]:
    """``count`` runs of ``argv``, one after another."""
    def go() -> None:
        for _ in range(count):
            call(argv)
    return go


def floor_cases(count: int) -> dict[str, Callable[[], None]]:
    """The cases of a floor, to sample beside the runtimes': ``count`` of each no-op command per sample."""
    return {name: starts(argv, count) for name, argv in FLOOR_COMMANDS.items()}


def python_floor(medians: Mapping[str, float]) -> float:
    """The least that any CLI of Python commands can take for what crun did (the "crun" median).

    Its interpreter starts ("python": as many as crun had processes, each
    running nothing), plus crun's time less crun's own process starts
    ("crun-noop"): the kernel's work for the containers, as fast as crun's
    C has it done.
    """
    return medians["python"] + medians["crun"] - medians["crun-noop"]


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def sample_in_blocks(cases: Mapping[str, Callable[[], object]], runs: int, block: int,
                     warmup: int = 0) -> dict[str, list[float]]:
    """Milliseconds per run of each case, the cases taking turns in blocks of ``block`` runs.

    ``warmup`` untimed runs precede each block (hyperfine's page cache and fork server warm-up).
    """
    samples: dict[str, list[float]] = {name: [] for name in cases}
    block = max(1, min(block or runs, runs))
    for _ in range(max(1, runs // block)):
        for name, action in cases.items():
            for _ in range(warmup):
                action()
            samples[name].extend(timed(action) for _ in range(block))
    return samples


def print_table(samples: dict[str, list[float]], width: int = 32) -> dict[str, float]:
    """Median, p10 and p90 of each case; returns the medians."""
    median = {name: statistics.median(values) for name, values in samples.items()}
    print(f"{'':{width}} {'median':>8} {'p10':>8} {'p90':>8}")
    for name, values in samples.items():
        deciles = statistics.quantiles(values, n=10)
        print(f"{name:{width}} {median[name]:8.2f} {deciles[0]:8.2f} {deciles[-1]:8.2f}")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=50, help="runs of each runtime")
    parser.add_argument("--block", type=int, default=0, help="rotate runtimes every N runs (default: no rotation)")
    args = parser.parse_args()
    fresh_cli()
    private_mount_namespace()
    work = Path(tempfile.mkdtemp(prefix="execdriver-bench-"))
    try:
        bundle = make_bundle(work / "bundle")
        rootfs = str(bundle / "rootfs")
        state = str(work / "state")
        peers_root = work / "peers"
        served = NativeDriver(root=state)
        direct = NativeDriver(root=state, fork_server=False)

        def api(driver: NativeDriver) -> Callable[[], object]:
            return lambda: driver.run(
                Command(id=f"b-{uuid.uuid4().hex[:10]}", rootfs=rootfs,
                        process_config=ProcessConfig(entrypoint="true")), Pipes())

        def cli(*argv: str) -> Callable[[], object]:
            return lambda: subprocess.run([*argv], check=True, stdin=subprocess.DEVNULL)

        def peer(binary: str) -> Callable[[], object]:
            def go() -> object:
                return subprocess.run([binary, "--root", str(peers_root / binary), "run", "--bundle", str(bundle),
                                       f"b-{uuid.uuid4().hex[:10]}"], check=True, stdin=subprocess.DEVNULL)
            return go

        cases: dict[str, Callable[[], object]] = {
            "execdriver API (fork server)": api(served),
            "execdriver API (direct clone)": api(direct),
            "execdriver sandbox (CLI)": cli(CLI, "--root", state, "sandbox", "--rootfs", rootfs, "true"),
            "runc run": peer("runc"),
            "crun run": peer("crun"),
        }
        block = max(1, min(args.block or args.runs, args.runs))
        samples = sample_in_blocks(cases, args.runs, block, warmup=3)
        served.close()
        runs = len(next(iter(samples.values())))
        method = "after 3 warm-up runs, back to back" if block == runs else f"in rotating blocks of {block}"
        print(f"start-to-exit of `true`, {runs} runs each, {method} (ms)")
        median = print_table(samples)
        api_ms, cli_ms = median["execdriver API (fork server)"], median["execdriver sandbox (CLI)"]
        runc_ms, crun_ms = median["runc run"], median["crun run"]
        print()
        print(f"API / crun: {api_ms / crun_ms:.2f}   CLI / runc: {cli_ms / runc_ms:.2f}   "
              f"CLI / crun: {cli_ms / crun_ms:.2f}")
        print(f"target API median <= 5 ms:   {api_ms:.2f} ms -> {'met' if api_ms <= 5 else 'NOT met'}")
        print(f"target CLI <= runc:          {cli_ms:.2f} vs {runc_ms:.2f} ms -> "
              f"{'met' if cli_ms <= runc_ms else 'NOT met'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
