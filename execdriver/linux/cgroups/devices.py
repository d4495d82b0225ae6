"""cgroup v2's device control: the rules compiled to an eBPF program on the container's cgroup.

cgroup v2 has no devices.allow and devices.deny: the kernel asks every
BPF_PROG_TYPE_CGROUP_DEVICE program attached to a process's cgroup and its
ancestors whether an mknod, or an open of a device node, may go ahead. So
the same rules that v1 writes to its files (``"allow"``/``"deny"``, then
``"a"`` or ``"c 1:3 rwm"``, ``"b *:* m"``) become a program here, with v1's
meaning: over a default deny, the last rule that matches decides, as runc's
and crun's programs decide. A program is a few instructions a rule and is
loaded in well under a millisecond.
"""

from __future__ import annotations

import os
import struct

from execdriver.linux import syscalls

# struct bpf_cgroup_dev_ctx: access_type (type in the low 16 bits, access above), major, minor.
_DEV_BLOCK, _DEV_CHAR = 1, 2
_ACCESS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE

# The instructions used (struct bpf_insn: code, dst and src registers, offset, immediate).
_LDX_W = 0x61  # dst = *(u32 *)(src + off)
_AND32_K = 0x54
_RSH32_K = 0x74
_MOV32_X = 0xBC
_MOV32_K = 0xB4
_JNE_K = 0x55  # if dst != imm: pc += off
_JNE_X = 0x5D
_EXIT = 0x95


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _parse(rule: str) -> tuple[int, int, int, int]:
    """(type or 0 for any, major or -1, minor or -1, access bits) of a v1 rule."""
    if rule == "a":
        return 0, -1, -1, 7
    kind, numbers, access = rule.split()
    major, minor = numbers.split(":")
    bits = 0
    for letter in access:
        bits |= _ACCESS[letter]
    return ({"c": _DEV_CHAR, "b": _DEV_BLOCK, "a": 0}[kind], -1 if major == "*" else int(major),
            -1 if minor == "*" else int(minor), bits)


def compile_rules(rules: list[tuple[str, str]]) -> bytes:
    """The program for ``rules`` ((verdict, rule) in order over deny-all); it returns 1 to allow."""
    code = [
        _insn(_LDX_W, 2, 1, 0),  # r2 = access_type
        _insn(_AND32_K, 2, imm=0xFFFF),  # r2 = type
        _insn(_LDX_W, 3, 1, 0),
        _insn(_RSH32_K, 3, imm=16),  # r3 = access
        _insn(_LDX_W, 4, 1, 4),  # r4 = major
        _insn(_LDX_W, 5, 1, 8),  # r5 = minor
    ]
    # The last matching rule decides: test them from the last one back, and return at the first match.
    for verdict, rule in reversed(rules):
        kind, major, minor, access = _parse(rule)
        tests: list[list[bytes]] = []
        if kind:
            tests.append([_insn(_JNE_K, 2, imm=kind)])
        if access != 7:  # the access asked for must lie within the rule's
            tests.append([_insn(_MOV32_X, 1, 3), _insn(_AND32_K, 1, imm=access), _insn(_JNE_X, 1, 3)])
        if major >= 0:
            tests.append([_insn(_JNE_K, 4, imm=major)])
        if minor >= 0:
            tests.append([_insn(_JNE_K, 5, imm=minor)])
        if not tests:  # it matches everything: the rules before it are never reached
            code += [_insn(_MOV32_K, 0, imm=1 if verdict == "allow" else 0), _insn(_EXIT)]
            return b"".join(code)
        block_length = sum(len(test) for test in tests) + 2
        emitted = 0
        for test in tests:
            emitted += len(test)
            jump = test[-1]
            # The jump skips the rest of the block: its tests and the verdict's two instructions.
            code += test[:-1]
            code.append(jump[:2] + struct.pack("<h", block_length - emitted) + jump[4:])
        code += [_insn(_MOV32_K, 0, imm=1 if verdict == "allow" else 0), _insn(_EXIT)]
    code += [_insn(_MOV32_K, 0, imm=0), _insn(_EXIT)]  # no rule matched: deny
    return b"".join(code)


def attach(directory: str, rules: list[tuple[str, str]]) -> None:
    """Load the program for ``rules`` and attach it to the cgroup at ``directory``.

    Attached with BPF_F_ALLOW_MULTI, so that a program of an ancestor (systemd's
    for a unit with a DevicePolicy) still has its say: an access must pass
    them all. It goes with the cgroup when the cgroup is removed.
    """
    program = syscalls.bpf_prog_load(syscalls.BPF_PROG_TYPE_CGROUP_DEVICE, compile_rules(rules),
                                     syscalls.BPF_CGROUP_DEVICE)
    try:
        target = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            syscalls.bpf_prog_attach(target, program, syscalls.BPF_CGROUP_DEVICE, syscalls.BPF_F_ALLOW_MULTI)
        finally:
            os.close(target)
    finally:
        os.close(program)
