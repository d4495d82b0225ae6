"""The device nodes every container gets, and the device rules that let it use them: one table.

rootfs.py makes the nodes in the container's /dev; the cgroup managers
allow them (v1's devices.allow, v2's eBPF program) with the rules derived
from the same rows, as runc's defaults do.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    DeviceWire = tuple[str, str, int, int, int, int, int]  # as marshal carries a Device


class Device:
    """A node to make under /dev: ``kind`` c, b, u (unbuffered character) or p (FIFO)."""

    __slots__ = ("gid", "kind", "major", "minor", "mode", "path", "uid")

    def __init__(self, path: str, kind: str, major: int, minor: int, mode: int = 0o666, uid: int = 0,
                 gid: int = 0) -> None:
        self.path = path
        self.kind = kind
        self.major = major
        self.minor = minor
        self.mode = mode
        self.uid = uid
        self.gid = gid

    def wire(self) -> DeviceWire:
        """As marshal carries it to the fork server and the init."""
        return (self.path, self.kind, self.major, self.minor, self.mode, self.uid, self.gid)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and self.wire() == other.wire()

    def __hash__(self) -> int:
        return hash(self.wire())

    def __repr__(self) -> str:
        return f"Device{self.wire()!r}"


# runc's default set: (path, major, minor), character devices, mode 0666.
_STANDARD = (("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7), ("/dev/random", 1, 8),
             ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0))
DEFAULT_DEVICES = tuple(Device(path, "c", major, minor) for path, major, minor in _STANDARD)

# What every unprivileged container may use: mknod of any node (opening is
# what counts), the standard nodes above, /dev/console, /dev/ptmx and the
# ptys, and tun. (verdict, rule) as devices.allow takes it.
DEFAULT_DEVICE_RULES = (
    ("allow", "c *:* m"), ("allow", "b *:* m"),
    *(("allow", f"c {major}:{minor} rwm") for _, major, minor in _STANDARD),
    ("allow", "c 5:1 rwm"), ("allow", "c 5:2 rwm"), ("allow", "c 136:* rwm"), ("allow", "c 10:200 rwm"),
)
ALLOW_ALL_DEVICES = (("allow", "a"),)


def device_rules(rules: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A container's rules: its own in order, then the defaults, which win (runc's order)."""
    return [*rules, *DEFAULT_DEVICE_RULES]
