"""What the OCI verbs share: the runtime of the state root, the one id."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from execdriver.native.state import StateStore
    from execdriver.oci.runtime import OciRuntime


def runtime(global_options: dict[str, object]) -> OciRuntime:
    """The OCI lifecycle (oci/runtime.py) of runc's --root and --systemd-cgroup."""
    from execdriver.oci.runtime import OciRuntime

    return OciRuntime(str(global_options["root"]), bool(global_options.get("systemd_cgroup")))


def store(global_options: dict[str, object]) -> StateStore:
    from execdriver.native.state import StateStore

    return StateStore(str(global_options["root"]))


def one_id(args: list[str], verb: str) -> str:
    from execdriver.cli.flags import UsageError

    if len(args) != 1:
        raise UsageError(f"{verb}: expects exactly one container id, got {len(args)} arguments")
    return args[0]


def preserve_fds(options: dict[str, object], verb: str) -> int:
    from execdriver.cli.flags import UsageError

    text = str(options["preserve_fds"])
    if not text.isdigit():
        raise UsageError(f"{verb}: --preserve-fds {text}: not a number")
    return int(text)
