"""The kernel, one concern per module; nothing here knows a Command."""

from __future__ import annotations

import os

# The host-wide network state (network/ipam.py: bridges, leases), named here
# so that removing a container can tell there is no lease without importing
# the network package, 0.2 ms and 50 KB of every delete.
NETWORK_STATE_DIR = "/run/execdriver/.network"

# setrlimit(2)'s resources by name: OCI's RLIMIT_NOFILE is "nofile" here, as docker's --ulimit names it.
RLIMITS = {"cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6, "nofile": 7, "memlock": 8,
           "as": 9, "locks": 10, "sigpending": 11, "msgqueue": 12, "nice": 13, "rtprio": 14, "rttime": 15}


def read_file(path: str) -> bytes:
    """A whole small file, through os calls: a file object costs more than the read.

    (Cgroup files on every start, passwd and group in an init, whose every
    new page is a copy of its parent's.)
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = [os.read(fd, 65536)]
        while chunks[-1]:
            chunks.append(os.read(fd, 65536))
    finally:
        os.close(fd)
    return b"".join(chunks)


def apparmor_enabled() -> bool:
    """Whether the kernel enforces AppArmor (as runc's apparmor.IsEnabled asks it)."""
    try:
        return read_file("/sys/module/apparmor/parameters/enabled").strip() == b"Y"
    except OSError:
        return False


def any_network_lease() -> bool:
    """Whether a bridged container ever took a lease on this host (else nothing of networking needs loading)."""
    return os.path.exists(os.path.join(NETWORK_STATE_DIR, "state.json"))
