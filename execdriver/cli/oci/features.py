"""``features``: what this runtime implements, as the runtime spec's features JSON."""

from __future__ import annotations

from execdriver.cli.flags import Flag

SYNOPSIS = "execdriver features"
DESCRIPTION = "Print the features of this runtime (the OCI features document)."
FLAGS = (Flag("--help", "-h", kind="bool", help="show this help"),)


def main(global_options: dict[str, object], options: dict[str, object], args: list[str]) -> int:
    from execdriver.gojson import pretty_json
    from execdriver.linux import capabilities, seccomp
    from execdriver.oci import config, hooks

    document = {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.1.0",
        "hooks": list(hooks.PHASES),
        "mountOptions": sorted([*config.MOUNT_FLAGS, *config.PROPAGATION, "rro"]),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "uts"],
            "capabilities": list(capabilities.NAMES[: capabilities.last_cap() + 1]),
            "cgroup": {"v1": True, "v2": True, "systemd": True, "systemdUser": True},
            "seccomp": {
                "enabled": True,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": sorted(seccomp.OPERATORS),
                "archs": sorted(seccomp.ARCHES),
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"org.opencontainers.runtime-spec.features.runtime": "execdriver"},
    }
    print(pretty_json(document))
    return 0
