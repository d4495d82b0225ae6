"""Resolve a user spec (``uid[:gid]``, ``name[:group]``) as runc and Docker do.

Read from the container's /etc/passwd and /etc/group, after pivot_root, so
the names are the image's, not the host's.
"""

from __future__ import annotations

from execdriver.linux import read_file


class User:
    __slots__ = ("gid", "groups", "home", "uid")

    def __init__(self, uid: int, gid: int, groups: list[int], home: str) -> None:
        self.uid, self.gid, self.groups, self.home = uid, gid, groups, home


class UserError(Exception):
    pass


def _entries(path: str) -> list[list[str]]:
    try:
        text = read_file(path).decode("utf-8", "replace")
    except OSError:
        return []
    return [line.split(":") for line in text.split("\n") if line.strip() and not line.startswith("#")]


def resolve(spec: str) -> User:
    name, _, group = spec.partition(":")
    passwd = _entries("/etc/passwd")
    uid, gid, home, user_name = 0, 0, "/", "root"
    entry = None
    for fields in passwd:
        by_name = fields[0] == name
        by_uid = fields[2:3] == [name] if name.isdigit() else (not name and fields[2:3] == ["0"])
        if len(fields) >= 7 and (by_name or by_uid):
            entry = fields
            break
    if entry is not None:
        user_name, uid, gid, home = entry[0], int(entry[2]), int(entry[3]), entry[5] or "/"
    elif name.isdigit() or not name:
        uid = int(name or 0)
        user_name = ""
    else:
        raise UserError(f"unable to find user {name}: no matching entries in passwd file")

    groups_file = _entries("/etc/group")
    if group:
        # An explicit group: that is the process's group, with no others
        # (runc's and Docker's rule; OCI users are always of this form).
        for fields in groups_file:
            if len(fields) >= 3 and (fields[0] == group or (group.isdigit() and fields[2] == group)):
                return User(uid, int(fields[2]), [], home)
        if not group.isdigit():
            raise UserError(f"unable to find group {group}: no matching entries in group file")
        return User(uid, int(group), [], home)
    # The implicit form: the passwd entry's group, and as supplementary groups
    # every group that lists the user as a member (Docker's root in Alpine is
    # in bin, daemon, sys, adm, disk, wheel ...).
    supplementary: list[int] = []
    if user_name:
        for fields in groups_file:
            member = len(fields) >= 4 and user_name in fields[3].split(",") and fields[2].isdigit()
            if member and int(fields[2]) not in supplementary:
                supplementary.append(int(fields[2]))
    return User(uid, gid, supplementary, home)


def setgroups_allowed() -> bool:
    """False in a user namespace mapped by a user without privileges (setgroups denied there)."""
    try:
        with open("/proc/self/setgroups", "rb") as handle:
            return handle.read().strip() != b"deny"
    except OSError:
        return True
