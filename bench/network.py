"""What bridge networking costs: start latency beside no network, throughput through a published port.

    .venv/bin/python bench/network.py [--runs N] [--block N] [--megabytes M]

Start: `true` through the API and the CLI, with loopback alone and on a
bridge (steady state: another container keeps the bridge up, as docker0
stays; "new bridge" creates and removes it each run), and with a
published port; `runc run` of the same bundle (no network: runc leaves
networking to CNI) as the peer's reference. Throughput: a bounded transfer
from the host to a container's TCP sink, through a published port on
127.0.0.1 and straight to the container's address. Bridges, subnets
(10.214.0.0/16) and state are the script's own and gone at its end.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.start import CLI, call, fresh_cli, make_bundle, print_table, private_mount_namespace, sample_in_blocks
from execdriver import Command, Network, NetworkInterface, Pipes, PortBinding, ProcessConfig
from execdriver.native.driver import NativeDriver

POOL = ("10.214.0.0/16", 24)
SINK = textwrap.dedent("""
    import socket
    server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", 80)); server.listen(4)
    while True:
        client, _ = server.accept()
        total = 0
        while chunk := client.recv(1 << 20):
            total += len(chunk)
        client.sendall(str(total).encode()); client.close()
""")


def transfer(address: str, port: int, megabytes: int) -> float:
    """MB/s of sending ``megabytes`` to the sink and reading its count back."""
    block = b"x" * (1 << 20)
    deadline = time.monotonic() + 10
    while True:
        try:
            sock = socket.create_connection((address, port), timeout=30)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    with sock:
        start = time.perf_counter()
        for _ in range(megabytes):
            sock.sendall(block)
        sock.shutdown(socket.SHUT_WR)
        count = int(sock.recv(64))
        elapsed = time.perf_counter() - start
    assert count == megabytes << 20, count
    return megabytes / elapsed


class Background:
    def __init__(self, driver: NativeDriver, command: Command) -> None:
        self.driver, self.command = driver, command
        self.thread = threading.Thread(target=driver.run, args=(command, Pipes(stdout=io.BytesIO())))
        self.thread.start()
        deadline = time.monotonic() + 20
        while command.container_pid == 0:
            assert time.monotonic() < deadline and self.thread.is_alive(), "container did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        self.driver.terminate(self.command)
        self.thread.join(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("--megabytes", type=int, default=512, help="size of each transfer")
    args = parser.parse_args()
    fresh_cli()
    private_mount_namespace()
    tag = uuid.uuid4().hex[:6]
    bridge, cold_bridge = f"edb{tag}", f"edc{tag}"
    work = Path(tempfile.mkdtemp(prefix="execdriver-bench-net-"))
    driver = NativeDriver(root=str(work / "state"), subnet_pool=POOL)
    keeper: Background | None = None
    try:
        bundle = make_bundle(work / "bundle")
        rootfs = str(bundle / "rootfs")
        keeper = Background(driver, Command(
            id=f"keep-{tag}", rootfs=rootfs, network=Network(interface=NetworkInterface(bridge=bridge)),
            process_config=ProcessConfig(entrypoint="sleep", arguments=["3600"])))

        def api(network: Network | None) -> None:
            command = Command(id=f"b-{uuid.uuid4().hex[:8]}", rootfs=rootfs, network=network,
                              process_config=ProcessConfig(entrypoint="true"))
            assert driver.run(command, Pipes()).exit_code == 0

        published = {"80/tcp": [PortBinding("127.0.0.1", "")]}
        sandbox = [CLI, "--root", str(work / "state"), "sandbox", "--subnet-pool", "10.214.0.0/16:24",
                   "--rootfs", rootfs]
        cases = {
            "API none": lambda: api(None),
            "API bridge": lambda: api(Network(interface=NetworkInterface(bridge=bridge))),
            "API bridge + published port": lambda: api(Network(interface=NetworkInterface(
                bridge=bridge, port_bindings=published))),  # type: ignore[arg-type]
            "API bridge, new bridge": lambda: api(Network(interface=NetworkInterface(bridge=cold_bridge))),
            "CLI none": lambda: call([*sandbox, "true"]),
            "CLI bridge": lambda: call([*sandbox, "--network", f"bridge:{bridge}", "true"]),
            "runc run (no network)": lambda: call(["runc", "--root", str(work / "runc"), "run", "--bundle",
                                                   str(bundle), f"r-{uuid.uuid4().hex[:8]}"]),
        }
        print(f"start to exit of `true`, ms ({args.runs} runs each, blocks of {args.block})")
        median = print_table(sample_in_blocks(cases, args.runs, args.block, warmup=2), width=30)
        print(f"\nadded by a bridge:  API {median['API bridge'] - median['API none']:+.2f} ms "
              f"(x{median['API bridge'] / median['API none']:.2f}), with a published port "
              f"{median['API bridge + published port'] - median['API none']:+.2f} ms, on a new bridge "
              f"{median['API bridge, new bridge'] - median['API none']:+.2f} ms; "
              f"CLI {median['CLI bridge'] - median['CLI none']:+.2f} ms "
              f"(x{median['CLI bridge'] / median['CLI none']:.2f})")
        print(f"API bridge / runc run (no network): x{median['API bridge'] / median['runc run (no network)']:.2f}")

        port = 0
        sink = Command(id=f"sink-{tag}", rootfs="/", network=Network(interface=NetworkInterface(
            bridge=bridge, port_bindings={"80/tcp": [PortBinding("", "")]})),
            process_config=ProcessConfig(entrypoint="python3", arguments=["-I", "-c", SINK]))
        server = Background(driver, sink)
        try:
            from execdriver.linux.network import ipam

            with ipam.Store() as store:
                lease = store.leases[store.find(os.path.abspath(driver._store.root), sink.id) or ""]
            address, port = lease["ip"], lease["ports"][0][2]
            rates: dict[str, list[float]] = {"published port (127.0.0.1)": [], "container address": []}
            for _ in range(3):
                rates["published port (127.0.0.1)"].append(transfer("127.0.0.1", port, args.megabytes))
                rates["container address"].append(transfer(address, 80, args.megabytes))
        finally:
            server.stop()
        print(f"\nthroughput, MB/s ({args.megabytes} MB per transfer, best of 3)")
        best = {name: max(values) for name, values in rates.items()}
        for name, value in best.items():
            print(f"{name:30} {value:8.0f}")
        print(f"published / direct: x{best['published port (127.0.0.1)'] / best['container address']:.2f}")
    finally:
        if keeper is not None:
            keeper.stop()
        driver.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
