"""Kubernetes through containerd: the CRI plugin with execdriver as a runtime handler.

The handler's configuration is taken from docs/kubernetes.md as it is
written there (with this machine's path to the runtime), so the page
cannot be wrong without this test failing.

The pod tests drive containerd as a kubelet does: through the CRI's gRPC
API (runtime.v1's RuntimeService and ImageService) on containerd's socket,
with a client compiled at test time from tests/cri.proto, and the exec
stream through the CRI's streaming server over a WebSocket. Each runs with
the `execdriver` handler and with `runc` beside it, which is what
execdriver is measured against.

No registry is reachable and no CNI plugin is installed, so the images are
imported into containerd's `k8s.io` namespace, the pods use the host's
network (the kubelet's hostNetwork, for which containerd calls no CNI
plugin), and the sandbox image is the busybox image with a sleeping
command in place of a pause program.

containerd 1.6 gives every sandbox container oomScoreAdj -998 (its
defaultSandboxOOMAdj), whatever the pod config says, unless
`restrict_oom_score_adj` holds it to containerd's own score. This
machine's root lacks CAP_SYS_RESOURCE, without which no process may lower
its oom_score_adj: the pod tests set that option, as a node without the
capability must, and the last test leaves it unset and checks that the
sandbox fails as cleanly with execdriver as with runc.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from execdriver.linux.cgroups.v1 import hierarchies
from tests import engines
from tests.engines import LAUNCHER, SHIM_DIRS, containerd_config, stop
from tests.images import docker_archive

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTED = "/opt/execdriver/.venv/bin/execdriver"
HANDLERS = ("execdriver", "runc")
# The sandbox image: busybox whose command sleeps (the pause container must keep running).
PAUSE = "localhost/pause:latest"
BUSYBOX = "localhost/busybox:latest"
CRI_NAMESPACE = "k8s.io"  # containerd's namespace for everything the CRI plugin runs
DEADLINE = 60.0  # seconds, for any one CRI call


@pytest.fixture(autouse=True, scope="module")
def _installed() -> None:
    engines.require("containerd")


def _handler_config() -> str:
    page = (ROOT / "docs" / "kubernetes.md").read_text()
    block = re.search(r"```toml\n(.*?)```", page, re.S)
    assert block is not None, "docs/kubernetes.md has no containerd configuration"
    return block.group(1).replace(DOCUMENTED, str(LAUNCHER))


class Containerd:
    """A containerd of the test's own, and what it left behind once stopped (``leftovers``)."""

    def __init__(self, work: Path, process: subprocess.Popen[bytes]) -> None:
        self.work = work
        self.process = process
        self.socket = work / "containerd.sock"
        self.leftovers: dict[str, list[str]] = {}

    def log(self) -> str:
        return (self.work / "containerd.log").read_text(errors="replace")[-4000:]

    def ctr(self, namespace: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["ctr", "-a", str(self.socket), "-n", namespace, *args], capture_output=True,
                                text=True, timeout=60, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"ctr {args}: {result.stderr}")
        return result


def _processes_naming(text: str) -> list[str]:
    """Processes whose command line names ``text`` (a shim names its containerd's socket)."""
    found: list[str] = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command and int(pid) != os.getpid():
            found.append(f"{pid} {command}")
    return found


def _shim_socket(command: str) -> str:
    """The socket that containerd 1.6 gives a shim in /run/containerd/s, from the shim's command line.

    Its name hashes containerd's address, the namespace and the shim's id;
    a shim killed leaves it behind.
    """
    words = command.split()
    flag = {words[i]: words[i + 1] for i in range(len(words) - 1) if words[i].startswith("-")}
    key = os.path.join(flag.get("-address", ""), flag.get("-namespace", ""), flag.get("-id", ""))
    return os.path.join(SHIM_DIRS[1], hashlib.sha256(key.encode()).hexdigest())


def _mounts_below(directory: Path) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        return [line.split()[4] for line in mountinfo if line.split()[4].startswith(f"{directory}/")]


def _hierarchies() -> list[str]:
    """v2's root, or every v1 hierarchy mounted (runc makes its cgroups in each, hugetlb and perf_event too)."""
    if engines.V2:
        return ["/sys/fs/cgroup"]
    return sorted(os.path.join("/sys/fs/cgroup", name) for name in os.listdir("/sys/fs/cgroup")
                  if os.path.ismount(os.path.join("/sys/fs/cgroup", name)))


def _cgroups_below(parent: str) -> list[str]:
    """Every cgroup below ``parent``, in every hierarchy."""
    found: list[str] = []
    for hierarchy in _hierarchies():
        for directory, subdirectories, _files in os.walk(os.path.join(hierarchy, parent.lstrip("/"))):
            found.extend(os.path.join(directory, name) for name in subdirectories)
    return found


def _remove_cgroup(parent: str) -> None:
    """The pod's cgroup and whatever is below it, as the kubelet removes a pod's (its processes killed first)."""
    for hierarchy in _hierarchies():
        top = os.path.join(hierarchy, parent.lstrip("/"))
        for directory, _subdirectories, _files in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
            with contextlib.suppress(OSError), open(os.path.join(directory, "cgroup.procs")) as procs:
                for pid in procs.read().split():
                    os.kill(int(pid), signal.SIGKILL)
            for _ in range(50):
                try:
                    os.rmdir(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)


@contextlib.contextmanager
def _containerd(work: Path, tables: str, runtime_roots: Sequence[Path] = (),
                cgroup_parent: str | None = None) -> Iterator[Containerd]:
    """containerd with ``tables``, stopped on leaving; then what it left is recorded, and removed.

    Left behind are processes naming the work directory (shims, whose
    containers would live on), mounts below it, container state in the
    runtimes' roots and cgroups below the pod's ``cgroup_parent``.
    """
    (work / "cni").mkdir(exist_ok=True)
    made_here = [d for d in SHIM_DIRS if not os.path.exists(d)]
    config = work / "config.toml"
    config.write_text(containerd_config(work, tables=tables))
    with open(work / "containerd.log", "wb") as log:
        process = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=log,
                                   start_new_session=True)
    daemon = Containerd(work, process)
    try:
        deadline = time.monotonic() + 30
        while not daemon.socket.exists():
            assert process.poll() is None and time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        yield daemon
    finally:
        stop(process, 20)
        deadline = time.monotonic() + 10  # a shim exits once its last container is deleted
        while _processes_naming(f"{work}/") and time.monotonic() < deadline:
            time.sleep(0.1)
        left = {
            "processes": _processes_naming(f"{work}/"),
            "mounts": _mounts_below(work),
            "state": [str(p) for root in runtime_roots for p in root.glob("*/*") if not p.name.startswith(".")],
            "cgroups": _cgroups_below(cgroup_parent) if cgroup_parent else [],
        }
        daemon.leftovers = {what: found for what, found in left.items() if found}
        for line in left["processes"]:  # shims this test's containerd started
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split()[0]), signal.SIGKILL)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_shim_socket(line))
        if cgroup_parent:
            _remove_cgroup(cgroup_parent)
        engines.unmount_below(work)
        for directory in reversed(made_here):
            if os.path.isdir(directory) and not os.listdir(directory):
                os.rmdir(directory)


@pytest.mark.timeout(180)
def test_containerd_loads_the_handler_and_runs_a_container_with_it(busybox_rootfs: Path, tmp_path: Path) -> None:
    work = tmp_path
    config = work / "config.toml"
    namespace = f"execdriver-k8s-{uuid.uuid4().hex[:8]}"
    with _containerd(work, f"""[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/busybox:latest"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{work}/cni"
    conf_dir = "{work}/cni"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
{_handler_config()}""", runtime_roots=[work / "execdriver-root"]) as daemon:
        try:
            plugins = daemon.ctr(namespace, "plugins", "ls").stdout
            cri = [line for line in plugins.splitlines() if "io.containerd.grpc.v1" in line and " cri " in line]
            assert cri and cri[0].split()[-1] == "ok", (plugins, daemon.log())
            dumped = subprocess.run(["containerd", "--config", str(config), "config", "dump"], capture_output=True,
                                    text=True, timeout=60, check=True).stdout
            assert 'runtimes.execdriver]' in dumped and f'BinaryName = "{LAUNCHER}"' in dumped
            assert 'runtime_type = "io.containerd.runc.v2"' in dumped

            # A container through the runc shim with the handler's options: the shim runs execdriver.
            daemon.ctr(namespace, "images", "import", str(docker_archive(busybox_rootfs, work / "busybox.tar")))
            name = f"k8s-{uuid.uuid4().hex[:8]}"
            out = daemon.ctr(namespace, "run", "--rm", "--runtime", "io.containerd.runc.v2",
                             "--runc-binary", str(LAUNCHER), "--fifo-dir", str(work / "fifo"),
                             "--runc-root", str(work / "execdriver-root"), "localhost/busybox:latest", name,
                             "sh", "-c", "echo hello from execdriver; cat /proc/1/cgroup | grep -c freezer").stdout
            assert out.split() == ["hello", "from", "execdriver", "1"]
            # The shim gives each namespace a state directory: the container's is gone from it.
            assert [p for p in (work / "execdriver-root").glob("*/*") if not p.name.startswith(".")] == []
            # So is the namespace's cgroup that its cgroupsPath (/<namespace>/<id>) made.
            assert [c for c in hierarchies().values() if os.path.exists(os.path.join(c, namespace))] == []
        finally:
            for image in daemon.ctr(namespace, "images", "ls", "-q", check=False).stdout.split():
                daemon.ctr(namespace, "images", "rm", image, check=False)
            for controller in set(hierarchies().values()):  # what a failure left (the assertion above fails then)
                if os.path.isdir(os.path.join(controller, namespace)):
                    os.rmdir(os.path.join(controller, namespace))
    assert daemon.leftovers == {}


# ---------------------------------------------------------------------------
# Pods through the CRI


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # the services' module imports the messages' by this name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cri_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModuleType, ModuleType]]:
    """tests/cri.proto compiled by grpcio-tools into a temporary directory: (messages, services).

    Loaded from there by path, so that neither the generated code nor its
    directory joins the tree, sys.path or mypy's view.
    """
    out = tmp_path_factory.mktemp("cri")
    proto = Path(__file__).with_name("cri.proto")
    compiled = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"--proto_path={proto.parent}",
                               f"--python_out={out}", f"--grpc_python_out={out}", str(proto)],
                              capture_output=True, text=True, timeout=60, check=False)
    assert compiled.returncode == 0, f"protoc (grpcio-tools, the test extra): {compiled.stderr}"
    try:
        yield _load("cri_pb2", out / "cri_pb2.py"), _load("cri_pb2_grpc", out / "cri_pb2_grpc.py")
    finally:
        sys.modules.pop("cri_pb2", None)
        sys.modules.pop("cri_pb2_grpc", None)


class Cri:
    """containerd's CRI as a kubelet calls it: ``cri.RunPodSandbox(request)``, every call with a deadline."""

    def __init__(self, socket: Path, api: tuple[ModuleType, ModuleType]) -> None:
        self.pb, services = api
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.runtime = services.RuntimeServiceStub(self.channel)
        self.images = services.ImageServiceStub(self.channel)

    def __getattr__(self, method: str) -> Any:
        stub = self.images if method in ("ImageStatus", "RemoveImage") else self.runtime
        call = getattr(stub, method)
        return lambda request, timeout=DEADLINE: call(request, timeout=timeout)

    def version(self) -> Any:
        """The CRI's version, once containerd answers (its socket is there before it listens)."""
        deadline = time.monotonic() + 30
        while True:
            try:
                return self.Version(self.pb.VersionRequest(version="v1"), timeout=5)
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def close(self) -> None:
        self.channel.close()


def _cri_tables(work: Path, *, restrict_oom_score_adj: bool) -> str:
    """The CRI plugin with runc (its default handler) and the documented execdriver handler.

    Both with ``SystemdCgroup = false``, which the page gives for the
    kubelet's cgroupfs driver, the driver of a host without systemd (this
    one): the pods' cgroups are cgroupfs paths below their cgroup_parent.
    Each handler's runtime keeps its state in the work directory.
    """
    handler = _handler_config()
    assert "SystemdCgroup = true\n" in handler, handler
    handler = handler.replace("SystemdCgroup = true\n", "SystemdCgroup = false\n")
    return f"""[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  restrict_oom_score_adj = {"true" if restrict_oom_score_adj else "false"}
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{work}/cni"
    conf_dir = "{work}/cni"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    Root = "{work}/runtime/runc"
    SystemdCgroup = false
{handler}    Root = "{work}/runtime/execdriver"
"""


def _import_images(daemon: Containerd, cri: Cri, rootfs: Path) -> None:
    """The images into the CRI's namespace (no registry to pull from), then seen through the ImageService."""
    work = daemon.work
    daemon.ctr(CRI_NAMESPACE, "images", "import",
               str(docker_archive(rootfs, work / "pause.tar", PAUSE, cmd=["sleep", "2147483647"])))
    daemon.ctr(CRI_NAMESPACE, "images", "import", str(docker_archive(rootfs, work / "busybox.tar", BUSYBOX)))
    deadline = time.monotonic() + 30
    for reference in (PAUSE, BUSYBOX):
        while not cri.ImageStatus(cri.pb.ImageStatusRequest(image=cri.pb.ImageSpec(image=reference))).image.id:
            assert time.monotonic() < deadline, f"the CRI does not see {reference}"
            time.sleep(0.1)


def _remove_images(cri: Cri) -> None:
    for reference in (PAUSE, BUSYBOX):
        with contextlib.suppress(grpc.RpcError):
            cri.RemoveImage(cri.pb.RemoveImageRequest(image=cri.pb.ImageSpec(image=reference)))


def _pod_config(cri: Cri, work: Path, cgroup_parent: str) -> Any:
    """A pod as the kubelet describes it: host network, a process namespace per container, its own IPC.

    No hostname: the kubelet sets none for a pod on the host's network,
    which keeps the host's UTS namespace (both runtimes refuse a hostname
    without a UTS namespace of the container's own).
    """
    pb = cri.pb
    uid = str(uuid.uuid4())
    log_directory = work / "pods" / uid
    log_directory.mkdir(parents=True)  # the kubelet makes it
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=f"pod-{uid[:8]}", uid=uid, namespace=f"execdriver-{uid[:8]}"),
        log_directory=str(log_directory),
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=cgroup_parent,
            security_context=pb.LinuxSandboxSecurityContext(namespace_options=_namespaces(pb)),
        ),
    )


def _namespaces(pb: ModuleType) -> Any:
    """The kubelet's for a pod on the host's network: its network, a process namespace per container, the pod's IPC.

    The kubelet gives them to the sandbox and to each container (containerd
    reads a container's own: without them it joins the sandbox's processes).
    """
    return pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER, ipc=pb.POD)


def _remove_pods(cri: Cri) -> None:
    """Every pod still there, stopped and removed (with its containers), as after a failed assertion."""
    with contextlib.suppress(grpc.RpcError):
        for pod in cri.ListPodSandbox(cri.pb.ListPodSandboxRequest()).items:
            with contextlib.suppress(grpc.RpcError):
                cri.StopPodSandbox(cri.pb.StopPodSandboxRequest(pod_sandbox_id=pod.id))
                cri.RemovePodSandbox(cri.pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id))


_LOG_LINE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) (stdout|stderr) ([FP]) (.*)")


def _log_lines(path: Path) -> list[tuple[str, str]]:
    """The CRI log file (what the kubelet's `kubectl logs` reads): (stream, line) of each full line."""
    lines = []
    for line in path.read_text().splitlines():
        match = _LOG_LINE.fullmatch(line)
        assert match is not None, f"not a CRI log line: {line!r}"
        assert match.group(3) == "F", line  # each line short, so whole
        lines.append((match.group(2), match.group(4)))
    return lines


def _stream_exec(url: str, stdin: bytes = b"") -> tuple[bytes, bytes, dict[str, Any]]:
    """An Exec's stream as kubectl reads and writes it: a WebSocket of the v4 channel protocol.

    Each binary message is one channel's: its first byte the channel (0
    stdin, 1 stdout, 2 stderr, 3 the final status, a Kubernetes Status as
    JSON), the rest its data. The server closes the connection after the
    status. (v4 cannot close stdin: the command must stop reading by itself.)
    """
    assert url.startswith("http://127.0.0.1:"), url
    channels: dict[int, bytes] = {1: b"", 2: b"", 3: b""}
    with connect("ws://" + url.removeprefix("http://"), subprotocols=[Subprotocol("v4.channel.k8s.io")],
                 open_timeout=10, close_timeout=5) as websocket:
        assert websocket.subprotocol == "v4.channel.k8s.io"
        if stdin:
            websocket.send(b"\0" + stdin)
        with contextlib.suppress(ConnectionClosed):  # the end of the stream is the server's close
            while True:
                message = websocket.recv(timeout=30)
                assert isinstance(message, bytes) and message, message
                channels[message[0]] = channels.get(message[0], b"") + message[1:]
    assert channels[3], f"no status on the error channel: {channels}"
    return channels[1], channels[2], json.loads(channels[3])


@contextlib.contextmanager
def _cri_session(handler: str, work: Path, busybox_rootfs: Path, cri_api: tuple[ModuleType, ModuleType], *,
                 restrict_oom_score_adj: bool) -> Iterator[tuple[Containerd, Cri, Any]]:
    """containerd with ``handler``'s runtime (its root under ``work``), the busybox image imported and a
    pod's config; afterwards the pods and images removed, and nothing of the daemon left."""
    cgroup_parent = f"/execdriver-k8s-{uuid.uuid4().hex[:8]}"
    with _containerd(work, _cri_tables(work, restrict_oom_score_adj=restrict_oom_score_adj),
                     runtime_roots=[work / "runtime" / handler], cgroup_parent=cgroup_parent) as daemon:
        cri = Cri(daemon.socket, cri_api)
        try:
            cri.version()
            _import_images(daemon, cri, busybox_rootfs)
            yield daemon, cri, _pod_config(cri, work, cgroup_parent)
        finally:
            _remove_pods(cri)
            _remove_images(cri)
            cri.close()
    assert daemon.process.returncode is not None
    assert daemon.leftovers == {}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("handler", HANDLERS)
def test_a_pod_through_the_cri(handler: str, busybox_rootfs: Path, tmp_path: Path,
                               cri_api: tuple[ModuleType, ModuleType]) -> None:
    work = tmp_path
    runtime_root = work / "runtime" / handler
    with _cri_session(handler, work, busybox_rootfs, cri_api, restrict_oom_score_adj=True) as (daemon, cri, config):
        pb = cri.pb
        version = cri.version()
        assert (version.runtime_name, version.runtime_api_version) == ("containerd", "v1")
        try:
            pod = cri.RunPodSandbox(pb.RunPodSandboxRequest(config=config, runtime_handler=handler),
                                    timeout=120).pod_sandbox_id
        except grpc.RpcError as error:
            raise AssertionError(f"RunPodSandbox: {error.details()}\n{daemon.log()}") from error
        status = cri.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod)).status
        assert (status.state, status.runtime_handler) == (pb.SANDBOX_READY, handler)
        # The handler's runtime runs the sandbox: its state is in that runtime's root.
        assert (runtime_root / CRI_NAMESPACE / pod).is_dir()
        # restrict_oom_score_adj: the sandbox gets containerd's own score instead of -998.
        bundle = work / "state" / "io.containerd.runtime.v2.task" / CRI_NAMESPACE / pod
        spec = json.loads((bundle / "config.json").read_text())
        own = int(Path(f"/proc/{daemon.process.pid}/oom_score_adj").read_text())
        assert spec["process"]["oomScoreAdj"] == own > -998

        script = ("trap 'echo stopping; exit 0' TERM; echo hello from the pod; echo to stderr >&2; "
                  "while true; do sleep 1; done")
        container_config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name="hello"), image=pb.ImageSpec(image=BUSYBOX),
            command=["sh", "-c", script], log_path="hello/0.log",
            linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
                namespace_options=_namespaces(pb))))
        container = cri.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=pod, config=container_config, sandbox_config=config), timeout=120).container_id
        cri.StartContainer(pb.StartContainerRequest(container_id=container), timeout=120)
        assert (runtime_root / CRI_NAMESPACE / container).is_dir()
        status = cri.ContainerStatus(pb.ContainerStatusRequest(container_id=container)).status
        assert status.state == pb.CONTAINER_RUNNING
        log = Path(config.log_directory) / "hello" / "0.log"
        assert status.log_path == str(log)
        deadline = time.monotonic() + 10
        while not log.exists() or len(_log_lines(log)) < 2:
            assert time.monotonic() < deadline, f"the container's log: {log.read_text() if log.exists() else ''}"
            time.sleep(0.1)
        assert sorted(_log_lines(log)) == [("stderr", "to stderr"), ("stdout", "hello from the pod")]

        # ExecSync: in the container (its pid 1 is the script), output and exit code back.
        done = cri.ExecSync(pb.ExecSyncRequest(
            container_id=container, cmd=["sh", "-c", "tr '\\0' ' ' </proc/1/cmdline; echo; echo err >&2; exit 3"],
            timeout=30), timeout=60)
        assert (done.stdout.decode(), done.stderr, done.exit_code) == (f"sh -c {script} \n", b"err\n", 3)

        # Exec: a URL on the streaming server, whose stream carries the output and the exit code.
        url = cri.Exec(pb.ExecRequest(container_id=container, cmd=["sh", "-c", "echo out; echo err >&2; exit 7"],
                                      stdout=True, stderr=True)).url
        out, err, result = _stream_exec(url)
        assert (out, err) == (b"out\n", b"err\n")
        assert (result["status"], result["reason"]) == ("Failure", "NonZeroExitCode"), result
        assert result["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}], result
        out, err, result = _stream_exec(cri.Exec(pb.ExecRequest(
            container_id=container, cmd=["echo", "streamed"], stdout=True, stderr=True)).url)
        assert (out, err, result["status"]) == (b"streamed\n", b"", "Success"), result
        out, err, result = _stream_exec(cri.Exec(pb.ExecRequest(
            container_id=container, cmd=["head", "-c", "6"], stdin=True, stdout=True, stderr=True)).url,
            stdin=b"typed\n")
        assert (out, err, result["status"]) == (b"typed\n", b"", "Success"), result

        # Stats, which the shim reads from the container's cgroup.
        stats = cri.ContainerStats(pb.ContainerStatsRequest(container_id=container)).stats
        assert stats.attributes.id == container
        assert stats.cpu.usage_core_nano_seconds.value > 0
        assert stats.memory.working_set_bytes.value > 0

        # Stop: SIGTERM reaches the script, which exits 0 (well before the 30 s of grace).
        started = time.monotonic()
        cri.StopContainer(pb.StopContainerRequest(container_id=container, timeout=30), timeout=90)
        assert time.monotonic() - started < 20
        status = cri.ContainerStatus(pb.ContainerStatusRequest(container_id=container)).status
        assert (status.state, status.exit_code, status.reason) == (pb.CONTAINER_EXITED, 0, "Completed")
        assert _log_lines(log)[-1] == ("stdout", "stopping")
        cri.RemoveContainer(pb.RemoveContainerRequest(container_id=container))
        assert not (runtime_root / CRI_NAMESPACE / container).exists()
        assert list(cri.ListContainers(pb.ListContainersRequest()).containers) == []

        cri.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod))
        status = cri.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod)).status
        assert status.state == pb.SANDBOX_NOTREADY
        cri.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod))
        assert list(cri.ListPodSandbox(pb.ListPodSandboxRequest()).items) == []
        assert not (runtime_root / CRI_NAMESPACE / pod).exists()


# What the shim reports of it (the last line of level "error" in the runtime's --log). runc's init fails
# in its C part, whose "nsexec[N]: failed to update /proc/self/oom_score_adj: Permission denied" is a
# line of level "fatal", which the shim skips, and runc reports the child it lost; execdriver names the
# write. That the oom_score_adj is what fails runc too, the pod test shows: the same pod runs there, with
# restrict_oom_score_adj the only difference.
EXPECTED_OOM_FAILURE = {
    "runc": "can't get final child's PID from pipe: EOF",
    "execdriver": "failed to update /proc/self/oom_score_adj to -998: Permission denied",
}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("handler", HANDLERS)
def test_a_sandbox_whose_oom_score_adj_cannot_be_set_fails_cleanly(
        handler: str, busybox_rootfs: Path, tmp_path: Path, cri_api: tuple[ModuleType, ModuleType]) -> None:
    with _cri_session(handler, tmp_path, busybox_rootfs, cri_api, restrict_oom_score_adj=False) as (_, cri, config):
        pb = cri.pb
        with pytest.raises(grpc.RpcError) as failure:
            cri.RunPodSandbox(pb.RunPodSandboxRequest(config=config, runtime_handler=handler), timeout=120)
        message = failure.value.details() or ""
        assert failure.value.code() == grpc.StatusCode.UNKNOWN, message
        assert "failed to create containerd task" in message and "OCI runtime create failed" in message, message
        assert EXPECTED_OOM_FAILURE[handler] in message, message
        assert list(cri.ListPodSandbox(pb.ListPodSandboxRequest()).items) == []
        assert list(cri.ListContainers(pb.ListContainersRequest()).containers) == []

