"""``spec``: write a default config.json, as ``runc spec`` does."""

from __future__ import annotations

import os

from execdriver.cli.flags import Flag, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SYNOPSIS = "execdriver spec [--bundle DIR] [--rootless]"
DESCRIPTION = "Write a default config.json for a bundle whose rootfs is ./rootfs."
FLAGS = (
    Flag("--bundle", "-b", default=".", metavar="DIR", help="where to write config.json"),
    Flag("--rootless", kind="bool", help="for a user without privileges: a user namespace maps them to root"),
    Flag("--help", "-h", kind="bool", help="show this help"),
)
_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def default_config() -> dict[str, Any]:
    """runc 1.1's: a terminal, and a cgroup namespace where the host has cgroup v2 alone."""
    from execdriver.linux import cgroups

    nosuid_noexec_nodev = ["nosuid", "noexec", "nodev"]
    namespaces = ["pid", "network", "ipc", "uts", "mount"] + (["cgroup"] if cgroups.version() == 2 else [])
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {name: list(_CAPS) for name in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "execdriver",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": [*nosuid_noexec_nodev, "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": nosuid_noexec_nodev},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": [*nosuid_noexec_nodev, "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": [*nosuid_noexec_nodev, "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": kind} for kind in namespaces],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                            "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def rootless(config: dict[str, Any]) -> dict[str, Any]:
    """What ``runc spec --rootless`` changes: a user namespace of the caller's ids, no network namespace
    (sysfs then cannot be mounted, so the host's is bound read-only), no cgroup mount or limits, no
    uid=/gid= mount options (ids the namespace does not map)."""
    linux = config["linux"]
    linux["namespaces"] = [*(ns for ns in linux["namespaces"] if ns["type"] not in ("network", "user")),
                           {"type": "user"}]
    linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    linux.pop("resources", None)
    mounts = []
    for mount in config["mounts"]:
        if mount["destination"].startswith("/sys"):
            continue
        options = [o for o in mount.get("options", []) if not o.startswith(("uid=", "gid="))]
        mounts.append({**mount, **({"options": options} if "options" in mount else {})})
    mounts.append({"destination": "/sys", "type": "none", "source": "/sys",
                   "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]})
    config["mounts"] = mounts
    return config


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    import json

    path = os.path.join(str(options["bundle"]), "config.json")
    if os.path.exists(path):
        raise UsageError(f"spec: {path} exists already")
    config = default_config()
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(rootless(config) if options["rootless"] else config, handle, indent=2)
        handle.write("\n")
    return 0
