"""execdriver.sandbox: one call with hard limits, templates of a pre-loaded interpreter, the command's limits.

Each limit is exceeded and must be stopped and reported as such; two
sandboxes of one template attack each other's memory, files, /tmp,
processes, network, random streams and cgroup limits.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from execdriver import ConfigError, sandbox
from execdriver.native.driver import NativeDriver
from execdriver.sandbox import SandboxFailed, Template
from tests.helpers import cgroup_dir

MiB = 1 << 20
EXECDRIVER = str(Path(sys.executable).parent / "execdriver")  # the venv's command, wherever the venv is


def sandbox_cgroups(prefix: str = "sandbox-") -> set[str]:
    root = cgroup_dir("execdriver", "memory")
    return {entry.name for entry in root.iterdir() if entry.name.startswith(prefix)} if root.is_dir() else set()


@pytest.fixture(autouse=True)
def nothing_left() -> Iterator[None]:
    """sandbox.run's cgroups (a template's are checked when it closes)."""
    before = sandbox_cgroups()
    yield
    assert sandbox_cgroups() <= before


@pytest.fixture(scope="module")
def numpy_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    with NativeDriver(root=str(tmp_path_factory.mktemp("state"))) as driver:
        template = Template(preload="import numpy", size=4, memory=128 * MiB, pids=32, driver=driver)
        try:
            yield template
        finally:
            template.close()
        assert not sandbox_cgroups(template.id)


# -- sandbox.run --------------------------------------------------------------


def test_run_is_subprocess_run_in_a_sandbox(driver: NativeDriver) -> None:
    result = sandbox.run(code="import sys; print(sys.stdin.read().upper()); print(open('data/in.txt').read())",
                         stdin=b"hello", files={"data/in.txt": "a file"}, driver=driver)
    assert result.returncode == 0 and result.stdout == b"HELLO\na file\n", result
    assert not result.timed_out and not result.oom_killed and result.ok
    assert result.wall_time > 0 and result.cpu_time > 0 and result.peak_memory > 1 * MiB
    failed = sandbox.run(["sh", "-c", "echo out; echo err >&2; exit 3"], driver=driver)
    assert (failed.returncode, failed.stdout, failed.stderr) == (3, b"out\n", b"err\n")
    with pytest.raises(SandboxFailed) as raised:
        sandbox.run(["false"], check=True, driver=driver)
    assert raised.value.returncode == 1 and isinstance(raised.value, subprocess.CalledProcessError)


def test_the_defaults_are_safe_without_thought(driver: NativeDriver) -> None:
    """nobody, no capabilities, no new privileges, a seccomp filter, loopback alone, a read-only root,
    and limits on memory and pids."""
    script = """
import os
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
print(os.getuid(), os.getgid(), status["CapEff"].strip(), status["CapBnd"].strip(), status["NoNewPrivs"].strip(),
      status["Seccomp"].strip())
print(sorted(os.listdir("/sys/class/net")))
print("read-only" if os.statvfs("/").f_flag & os.ST_RDONLY else "writable")
print(sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
"""
    result = sandbox.run(code=script, driver=driver)
    lines = result.stdout.decode().splitlines()
    assert lines == ["65534 65534 0000000000000000 0000000000000000 1 2", "['lo']", "read-only", "[1]"], \
        result
    assert sandbox.run(code="b = bytearray(300 << 20)", driver=driver).oom_killed  # 256 MiB by default
    forks = sandbox.run(code="import os\nfor _ in range(80): os.fork() or os._exit(0)", driver=driver)
    assert forks.returncode == 1 and b"BlockingIOError" in forks.stderr  # 64 by default


def test_a_time_out_kills_the_whole_tree(driver: NativeDriver) -> None:
    result = sandbox.run(["sh", "-c", "sleep 60 & sleep 60 & echo started; wait"], timeout=2, driver=driver)
    assert result.timed_out and result.returncode == -9 and result.stdout == b"started\n"
    assert 2 <= result.wall_time < 10  # (the sleeps, which hold its output, died with it)
    with pytest.raises(SandboxFailed, match="timed out"):
        sandbox.run(["sleep", "60"], timeout=0.2, check=True, driver=driver)
    early = sandbox.run(["sleep", "60"], timeout=0.001, driver=driver)  # the deadline before the sandbox is up
    assert early.timed_out and early.returncode == -9 and early.wall_time < 10


def test_exceeding_memory_is_an_oom_kill_reported_as_such(driver: NativeDriver) -> None:
    result = sandbox.run(code="b = bytearray(200 << 20)", memory=32 * MiB, driver=driver)
    assert result.oom_killed and result.returncode == -9 and not result.timed_out
    assert result.peak_memory <= 32 * MiB


def test_pids_cpus_and_tmp_size_are_hard_limits(driver: NativeDriver) -> None:
    forks = sandbox.run(code="import os\nfor _ in range(50): os.fork() or os._exit(0)", pids=8, driver=driver)
    assert forks.returncode == 1 and b"BlockingIOError" in forks.stderr, forks
    spin = sandbox.run(code="while True: pass", cpus=0.2, timeout=1.0, driver=driver)
    assert spin.timed_out and spin.cpu_time < 0.5, spin
    full = sandbox.run(["sh", "-c", "head -c 3000000 /dev/zero > /tmp/big"], tmp_size=1 * MiB, driver=driver)
    assert full.returncode == 1 and b"No space left on device" in full.stderr


def test_bad_input_is_refused_before_anything_is_made(driver: NativeDriver) -> None:
    for kwargs, message in (({"args": ["true"], "code": "pass"}, "either args or code"),
                            ({"args": []}, "args"),
                            ({"args": ["true"], "memory": 1024}, "memory"),
                            ({"args": ["true"], "cpus": float("nan")}, "cpus"),
                            ({"args": ["true"], "timeout": 0}, "timeout"),
                            ({"args": ["true"], "files": {"/etc/x": b""}}, "below /tmp"),
                            ({"args": ["true"], "files": {"../x": b""}}, "below /tmp"),
                            ({"args": ["true"], "network": "wifi"}, "network"),
                            ({"args": ["true"], "rootfs": "/nonexistent"}, "rootfs")):
        with pytest.raises(ConfigError, match=message):
            sandbox.run(driver=driver, **kwargs)


def test_run_async_is_the_asyncio_twin(driver: NativeDriver) -> None:
    async def main() -> list[sandbox.Result]:
        return await asyncio.gather(*(sandbox.run_async(code=f"print({n} * 2)", driver=driver) for n in range(3)))

    assert [result.stdout for result in asyncio.run(main())] == [b"0\n", b"2\n", b"4\n"]


def test_a_cancelled_run_async_kills_its_sandbox(driver: NativeDriver) -> None:
    """As asyncio's subprocess kills nothing, but a sandbox is the caller's to stop: cancelling the await
    kills it (its cgroup gone: nothing_left), or keeps one not yet started from starting."""
    async def main() -> float:
        for delay in (0.0, 0.5):  # before it has started, and while it runs
            task = asyncio.ensure_future(sandbox.run_async(["sleep", "30"], timeout=60, driver=driver))
            await asyncio.sleep(delay)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        begin = time.monotonic()
        while sandbox_cgroups() and time.monotonic() - begin < 10:  # the worker thread's cleanup
            await asyncio.sleep(0.05)
        return time.monotonic() - begin

    assert asyncio.run(main()) < 10


def test_a_cancelled_template_run_async_kills_its_sandbox(numpy_template: Template) -> None:
    async def main() -> None:
        task = asyncio.ensure_future(numpy_template.run_async("import time; time.sleep(30)", timeout=60))
        await asyncio.sleep(0.5)
        begin = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        while numpy_template._in_flight and time.monotonic() - begin < 10:  # its worker thread, done
            await asyncio.sleep(0.05)
        assert time.monotonic() - begin < 10, "the cancelled sandbox was left to run"
        result = await numpy_template.run_async("print('next')")
        assert result.stdout == b"next\n"

    asyncio.run(main())


# -- templates ----------------------------------------------------------------


def test_a_template_runs_code_with_its_preload_done(numpy_template: Template) -> None:
    result = numpy_template.run("print(numpy.__version__); import sys; print(sys.stdin.read()); "
                                "print(open('in.txt').read())", stdin=b"fed", files={"in.txt": b"given"})
    import numpy

    assert result.stdout.decode().split() == [numpy.__version__, "fed", "given"], result
    assert result.returncode == 0 and result.peak_memory > 0
    failed = numpy_template.run("import sys; print('bye', file=sys.stderr); sys.exit(7)")
    assert failed.returncode == 7 and failed.stderr == b"bye\n"
    raised = numpy_template.run("raise ValueError('no')")
    assert raised.returncode == 1 and b"ValueError: no" in raised.stderr


def test_a_templates_sandboxes_are_limited_like_any(numpy_template: Template) -> None:
    oom = numpy_template.run("b = bytearray(300 << 20)")
    assert oom.oom_killed and oom.returncode == -9
    slow = numpy_template.run("import time; time.sleep(60)", timeout=0.3)
    assert slow.timed_out and slow.returncode == -9
    forks = numpy_template.run("import os\nfor _ in range(100): os.fork() or os._exit(0)")
    assert forks.returncode == 1 and b"BlockingIOError" in forks.stderr, forks
    who = numpy_template.run("import os; print(os.getuid(), open('/proc/self/status').read().count('Seccomp:\\t2'))")
    assert who.stdout == b"65534 1\n"


def test_two_sandboxes_of_a_template_share_nothing(numpy_template: Template) -> None:
    """Run side by side: each tries to reach the other through memory, files, /tmp, /dev/shm,
    processes, the network, the random streams and the cgroup."""
    spy = """
import os, random, socket, sys, time
import numpy
numpy.LEAK = getattr(numpy, "LEAK", 0) + 1          # memory: a module both imported
open("/tmp/mine", "w").write(str(os.getpid()))
open("/dev/shm/mine", "w").write("x")
server = socket.socket(); server.bind(("127.0.0.1", 4444)); server.listen()
print("leak", numpy.LEAK)
print("tmp", sorted(os.listdir("/tmp")), sorted(os.listdir("/dev/shm")))
print("pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
print("net", os.readlink("/proc/self/ns/net"), os.readlink("/proc/self/ns/mnt"))
print("cgroup", next(line.strip() for line in open("/proc/self/cgroup") if ":memory:" in line or line[:3] == "0::"))
print("random", random.random(), numpy.random.random())
sys.stdout.flush()
time.sleep(0.5)
"""
    results: list[sandbox.Result] = []
    threads = [threading.Thread(target=lambda: results.append(numpy_template.run(spy))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, second = ({line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in result.stdout.decode().splitlines()}
                     for result in results)
    for seen in (first, second):
        assert seen["leak"] == "1"
        assert seen["tmp"] == "['mine'] ['mine']"  # (the other's port 4444 was free too: the bind worked)
        assert seen["pids"] == "[1]"
    assert first["net"] != second["net"]
    assert first["cgroup"] != second["cgroup"]
    assert first["random"] != second["random"]
    assert all(result.returncode == 0 for result in results), results


def test_one_sandbox_over_its_memory_limit_leaves_its_neighbour_alone(numpy_template: Template) -> None:
    """Each has a cgroup of its own (128 MiB here): one filling its limit is OOM-killed while the other,
    at once, holds 100 MiB and finishes; were the limit one for both, the 100 MiB would not fit."""
    results: dict[str, sandbox.Result] = {}

    def run(name: str, code: str) -> None:
        results[name] = numpy_template.run(code)

    hog = threading.Thread(target=run, args=("hog", "import time; time.sleep(0.2); b = bytearray(300 << 20)"))
    neighbour = threading.Thread(target=run, args=(
        "neighbour", "import time; b = bytearray(100 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.6); "
                     "print('fine')"))
    for thread in (hog, neighbour):
        thread.start()
    for thread in (hog, neighbour):
        thread.join()
    assert results["hog"].oom_killed
    assert results["neighbour"].stdout == b"fine\n" and not results["neighbour"].oom_killed, results["neighbour"]
    assert results["neighbour"].peak_memory >= 100 << 20


def test_a_preload_that_would_share_writable_memory_is_refused(driver: NativeDriver) -> None:
    with pytest.raises(sandbox.SandboxError, match="writable shared mapping"):
        Template(preload="import mmap; shared = mmap.mmap(-1, 4096)", size=1, driver=driver)


def test_a_preload_that_starts_threads_is_refused(driver: NativeDriver) -> None:
    """A clone copies one thread: the others, and the locks they hold, would be missing in every sandbox."""
    with pytest.raises(sandbox.SandboxError, match="started threads"):
        Template(preload="import threading, time; threading.Thread(target=time.sleep, args=(60,), daemon=True)"
                         ".start()", size=1, driver=driver)


def test_a_sandbox_that_cannot_be_set_up_fails_the_template_with_its_reason(driver: NativeDriver) -> None:
    """Not sandboxes made and dead one after the other: the first one's error, on every run."""
    with Template(size=2, cwd="/tmp/not-there", driver=driver) as template:
        for _ in range(2):
            with pytest.raises(sandbox.SandboxError, match=r"could not be set up: FileNotFoundError.*not-there"):
                template.run("print(1)")


def test_a_preload_that_fails_says_why(driver: NativeDriver) -> None:
    with pytest.raises(sandbox.SandboxError, match="ModuleNotFoundError"):
        Template(preload="import no_such_module_anywhere", size=1, driver=driver)


def test_a_closed_template_leaves_nothing(driver: NativeDriver) -> None:
    template = Template(size=2, driver=driver)
    assert template.run("print(1)").stdout == b"1\n"
    template.close()
    with pytest.raises(sandbox.SandboxError, match="closed"):
        template.run("print(1)")
    assert not sandbox_cgroups(template.id)
    assert os.listdir(driver.store.root) == [] or all(name.startswith(".") for name in os.listdir(driver.store.root))


_KILLED_OWNER = """
import sys, time
sys.path.insert(0, {root!r})
from execdriver.native.driver import NativeDriver
from execdriver.sandbox import Template
driver = NativeDriver(root={state!r})
template = Template(size=3, driver=driver)
template.wait_full(30)
print(template.id, flush=True)
time.sleep(600)
"""


def test_a_template_whose_program_is_killed_leaves_nothing(tmp_path: Path) -> None:
    """SIGKILL of the program: the fork server kills the zygote, and with it every sandbox (its pid
    namespace), and removes the template's cgroup with the sandboxes' below it."""
    code = _KILLED_OWNER.format(root=str(Path(__file__).resolve().parent.parent), state=str(tmp_path / "state"))
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        template_id = owner.stdout.readline().strip()
        assert template_id.startswith("template-") and sandbox_cgroups(template_id)
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 20
    while sandbox_cgroups(template_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not sandbox_cgroups(template_id)


# -- the command --------------------------------------------------------------


def test_the_sandbox_command_takes_the_limits() -> None:
    def sandbox_command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([EXECDRIVER, "sandbox", *args], check=False, capture_output=True, text=True,
                              timeout=60)

    assert sandbox_command("--timeout", "0.3", "sh", "-c", "sleep 30 & sleep 30").returncode == 124
    assert sandbox_command("--memory", "32m", "python3", "-c", "b = bytearray(200 << 20)").returncode == 137
    forks = sandbox_command("--pids-limit", "4", "sh", "-c", "for i in 1 2 3 4 5 6; do sleep 1 & done; wait")
    assert "fork" in forks.stderr.lower(), forks
    assert sandbox_command("--tmp-size", "1m", "sh", "-c", "head -c 3000000 /dev/zero > /tmp/x").returncode == 1
    refused = sandbox_command("--cpus", "many", "true")
    assert refused.returncode == 2 and "--cpus many" in refused.stderr
