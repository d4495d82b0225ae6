"""A service in a container, reached through a published port.

    python examples/web_service.py

Python's http.server runs in a container on a bridge (created if missing,
removed when the container goes), its port 8000 published on a free host
port of 127.0.0.1; this program fetches a page through it, then stops the
service. It serves the container's /etc, so the page is its own hostname.
"""

from __future__ import annotations

import threading
import time
import urllib.request
import uuid

from execdriver import Command, Network, NetworkInterface, Pipes, PortBinding, ProcessConfig
from execdriver.native.driver import NativeDriver


def serve_and_fetch(driver: NativeDriver, bridge: str = "execdriver0") -> str:
    command = Command(
        id=f"web-{uuid.uuid4().hex[:8]}", rootfs="/", readonly_rootfs=True, hostname="web",
        network=Network(interface=NetworkInterface(
            bridge=bridge, port_bindings={"8000/tcp": [PortBinding(host_ip="127.0.0.1", host_port="")]})),
        process_config=ProcessConfig(entrypoint="python3", arguments=["-m", "http.server", "-d", "/etc", "8000"]),
    )
    thread = threading.Thread(target=driver.run, args=(command, Pipes()))
    thread.start()
    try:
        port = _published_port(driver, command.id)
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=2) as response:
                    body: bytes = response.read()
                    return body.decode()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        driver.terminate(command)
        thread.join(10)


def _published_port(driver: NativeDriver, container_id: str) -> int:
    """The host port given to 8000/tcp, once the container runs."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        bindings = driver.ports(container_id).get("8000/tcp")
        if bindings:
            return int(bindings[0].host_port)
        time.sleep(0.02)
    raise TimeoutError("the container did not publish its port")


def main() -> None:
    with NativeDriver() as driver:
        print("the container's /etc/hostname, through its published port:", serve_and_fetch(driver).strip())


if __name__ == "__main__":
    main()
