"""/etc/hosts, /etc/hostname and /etc/resolv.conf of a bridged container.

Written on the host and bind-mounted over the image's, as Docker does: the
image is never changed, and every container has its own.
"""

from __future__ import annotations

import ipaddress
import os

from execdriver.linux.filesystem import Mount, bind

FILES = ("hosts", "hostname", "resolv.conf")
_FALLBACK_DNS = ("8.8.8.8", "8.8.4.4")  # Docker's, when the host's only resolver is local

_HOSTS = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""


def resolv_conf(host: str = "/etc/resolv.conf") -> str:
    """The host's resolver settings without loopback name servers, which the container cannot reach."""
    try:
        with open(host, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        lines = []
    kept, servers = [], 0
    for line in lines:
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            try:
                if ipaddress.ip_address(words[1].split("%")[0]).is_loopback:
                    continue
            except ValueError:
                continue
            servers += 1
        kept.append(line)
    if not servers:
        kept += [f"nameserver {server}" for server in _FALLBACK_DNS]
    return "\n".join(kept) + "\n"


def write(directory: str, address: str, hostname: str) -> None:
    os.makedirs(directory, mode=0o755)
    hostname = hostname or os.uname().nodename  # what a new UTS namespace starts with
    contents = {"hosts": f"{_HOSTS}{address}\t{hostname}\n", "hostname": f"{hostname}\n",
                "resolv.conf": resolv_conf()}
    for name, text in contents.items():
        with open(os.path.join(directory, name), "w", encoding="utf-8") as handle:
            handle.write(text)


def mounts(directory: str, names: tuple[str, ...] = FILES) -> list[Mount]:
    return [bind(os.path.join(directory, name), f"/etc/{name}", writable=True, is_dir=False, recursive=False)
            for name in names]


def remove(directory: str) -> None:
    for name in FILES:
        try:
            os.unlink(os.path.join(directory, name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(directory)
    except FileNotFoundError:
        pass
