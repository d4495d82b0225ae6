"""Resolve a user spec (``uid[:gid]``, ``name[:group]``) as runc and Docker do.

Read from the container's /etc/passwd and /etc/group, after pivot_root, so
the names are the image's, not the host's.
"""

from __future__ import annotations


class User:
    __slots__ = ("gid", "groups", "home", "uid")

    def __init__(self, uid: int, gid: int, groups: list[int], home: str) -> None:
        self.uid, self.gid, self.groups, self.home = uid, gid, groups, home


class UserError(Exception):
    pass


def _entries(path: str) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return [line.rstrip("\n").split(":") for line in handle if line.strip() and not line.startswith("#")]
    except OSError:
        return []


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

    if not spec or (not group and not user_name):
        # The default user (root) and bare numeric ids: no group file to read.
        return User(uid, gid, [gid], home)
    groups_file = _entries("/etc/group")
    if group:
        for fields in groups_file:
            if len(fields) >= 3 and (fields[0] == group or (group.isdigit() and fields[2] == group)):
                gid = int(fields[2])
                break
        else:
            if not group.isdigit():
                raise UserError(f"unable to find group {group}: no matching entries in group file")
            gid = int(group)
    supplementary = [gid]
    if user_name:
        for fields in groups_file:
            member = len(fields) >= 4 and user_name in fields[3].split(",") and fields[2].isdigit()
            if member and int(fields[2]) not in supplementary:
                supplementary.append(int(fields[2]))
    return User(uid, gid, supplementary, home)
