"""A seccomp filter for process sandboxes: a deny-list of system calls no sandboxed
program needs and that widen the kernel's attack surface (namespaces, mounts and
the new mount API, tracing, keyrings, BPF, io_uring, module loading).

``clone`` is allowed only without namespace flags (a nested user namespace would
give the code every capability inside it, and a new surface of the kernel to
probe); ``clone3``, whose flags live in memory a filter cannot read, answers ENOSYS,
so C libraries fall back to ``clone``. bwrap also disables user namespaces inside
the sandbox (``--disable-userns``): two locks on one door.

The filter is a classic BPF program written out here (a few dozen lines of bytecode
are simpler to audit than a dependency on libseccomp's bindings); bwrap installs it
right before it executes the sandboxed program.
"""

from __future__ import annotations

import errno
import platform
import struct
from typing import Any

_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000
_X32_BIT = 0x40000000
_ARG0_LOW = 16
"""Offset of the low 32 bits of a call's first argument in ``seccomp_data``."""
NAMESPACE_FLAGS = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
)
_CLONE = {"x86_64": 56, "aarch64": 220}
_CLONE3 = 435

_ARCHES = {
    "x86_64": 0xC000003E,
    "aarch64": 0xC00000B7,
}

_DENIED: dict[str, dict[str, int]] = {
    "x86_64": {
        "ptrace": 101,
        "syslog": 103,
        "personality": 135,
        "pivot_root": 155,
        "acct": 163,
        "mount": 165,
        "umount2": 166,
        "swapon": 167,
        "swapoff": 168,
        "reboot": 169,
        "sethostname": 170,
        "setdomainname": 171,
        "init_module": 175,
        "delete_module": 176,
        "quotactl": 179,
        "kexec_load": 246,
        "add_key": 248,
        "request_key": 249,
        "keyctl": 250,
        "unshare": 272,
        "perf_event_open": 298,
        "name_to_handle_at": 303,
        "open_by_handle_at": 304,
        "setns": 308,
        "process_vm_readv": 310,
        "process_vm_writev": 311,
        "kexec_file_load": 320,
        "bpf": 321,
        "userfaultfd": 323,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "open_tree": 428,
        "move_mount": 429,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "fspick": 433,
        "mount_setattr": 442,
    },
    "aarch64": {
        "quotactl": 60,
        "acct": 89,
        "personality": 92,
        "unshare": 97,
        "kexec_load": 104,
        "init_module": 105,
        "delete_module": 106,
        "syslog": 116,
        "ptrace": 117,
        "reboot": 142,
        "sethostname": 161,
        "setdomainname": 162,
        "add_key": 217,
        "request_key": 218,
        "keyctl": 219,
        "swapon": 224,
        "swapoff": 225,
        "perf_event_open": 241,
        "name_to_handle_at": 264,
        "open_by_handle_at": 265,
        "setns": 268,
        "process_vm_readv": 270,
        "process_vm_writev": 271,
        "bpf": 280,
        "userfaultfd": 282,
        "kexec_file_load": 294,
        "umount2": 39,
        "mount": 40,
        "pivot_root": 41,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "open_tree": 428,
        "move_mount": 429,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "fspick": 433,
        "mount_setattr": 442,
    },
}


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def supported() -> bool:
    return platform.machine() in _ARCHES


def denied_syscalls() -> list[str]:
    machine = platform.machine()
    if machine not in _DENIED:
        return []
    return sorted([*_DENIED[machine], "clone (with namespace flags)", "clone3 (ENOSYS)"])


def program(machine: str | None = None) -> bytes:
    """The BPF program for this machine's architecture; other ABIs are killed."""
    machine = machine or platform.machine()
    arch = _ARCHES[machine]
    numbers = sorted(set(_DENIED[machine].values()))
    eperm = _RET_ERRNO | errno.EPERM
    code = [
        _insn(_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        _insn(_JEQ_K, 1, 0, arch),
        _insn(_RET_K, 0, 0, _RET_KILL_PROCESS),
        _insn(_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
    ]
    if machine == "x86_64":
        code += [_insn(_JGE_K, 0, 1, _X32_BIT), _insn(_RET_K, 0, 0, eperm)]
    for number in numbers:
        code += [_insn(_JEQ_K, 0, 1, number), _insn(_RET_K, 0, 0, eperm)]
    code += [
        _insn(_JEQ_K, 0, 1, _CLONE3),
        _insn(_RET_K, 0, 0, _RET_ERRNO | errno.ENOSYS),
        # clone: allowed unless its flags ask for a namespace.
        _insn(_JEQ_K, 0, 3, _CLONE[machine]),
        _insn(_LD_W_ABS, 0, 0, _ARG0_LOW),
        _insn(_JSET_K, 0, 1, NAMESPACE_FLAGS),
        _insn(_RET_K, 0, 0, eperm),
        _insn(_RET_K, 0, 0, _RET_ALLOW),
    ]
    return b"".join(code)


_OCI_ARCHES = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}


def oci_profile(machine: str | None = None) -> dict[str, Any]:
    """The same filter as an OCI runtime profile (``linux.seccomp``), for gVisor, which
    applies it to the sandboxed programs inside its own kernel. Without the ``clone3``
    rule: gVisor's kernel answers ``clone3`` with ENOSYS itself, and a filter's answer
    there stops libc's fallback to ``clone`` (no thread could start)."""
    machine = machine or platform.machine()
    names = sorted(_DENIED[machine])
    # One rule per namespace flag: OCI conditions compare, they cannot test "any bit".
    clone_rules = [
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": errno.EPERM,
            "args": [{"index": 0, "value": bit, "valueTwo": bit, "op": "SCMP_CMP_MASKED_EQ"}],
        }
        for bit in (1 << i for i in range(32))
        if NAMESPACE_FLAGS & bit
    ]
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": [_OCI_ARCHES[machine]],
        "syscalls": [
            {"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM},
            *clone_rules,
        ],
    }
