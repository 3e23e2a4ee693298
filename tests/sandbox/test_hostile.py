"""Hostile code and bad input, on every backend: each is contained, reported with a
plain status, and leaves the host and other sandboxes untouched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hangar.errors import SandboxFileError
from hangar.sandbox.base import ExecStatus
from hangar.sandbox.teardown import settle_teardowns
from tests.sandbox.conftest import StartSandbox


def is_process_backend(start: StartSandbox) -> bool:
    return start.backend != "wasm"  # type: ignore[attr-defined]


async def test_an_infinite_loop_times_out(start: StartSandbox) -> None:
    sandbox = await start()
    result = await sandbox.run_python("while True:\n    pass", timeout=1)
    assert result.status == ExecStatus.TIMEOUT
    if is_process_backend(start):
        # Interrupted, not killed: the session and its state survive.
        assert (await sandbox.run_python("2 + 2")).value == "4"


async def test_a_loop_that_catches_exceptions_still_times_out(start: StartSandbox) -> None:
    sandbox = await start()
    code = "while True:\n    try:\n        pass\n    except Exception:\n        pass"
    assert (await sandbox.run_python(code, timeout=1)).status == ExecStatus.TIMEOUT


async def test_a_memory_bomb_is_oom(start: StartSandbox) -> None:
    sandbox = await start(limits={"memoryMb": 256})
    result = await sandbox.run_python(
        "blocks = []\nwhile True:\n    blocks.append(bytearray(16 * 1024 * 1024))"
    )
    assert result.status == ExecStatus.OOM, result


async def test_endless_output_is_truncated(start: StartSandbox) -> None:
    sandbox = await start(limits={"outputBytes": 10_000})
    result = await sandbox.run_python("for i in range(10**6):\n    print('spam' * 20)", timeout=20)
    assert result.status == ExecStatus.OUTPUT_TRUNCATED
    assert len(result.stdout.encode()) <= 10_000


async def test_endless_shell_output_is_stopped(start_process: StartSandbox) -> None:
    sandbox = await start_process(limits={"outputBytes": 10_000})
    result = await sandbox.run_shell("yes spam", timeout=20)
    assert result.status == ExecStatus.OUTPUT_TRUNCATED
    assert len(result.stdout.encode()) <= 10_000


async def test_a_fork_bomb_is_contained(start_process: StartSandbox) -> None:
    start = start_process
    sandbox = await start(limits={"processes": 32})
    result = await sandbox.run_python("import os\nwhile True:\n    os.fork()", timeout=5)
    assert result.status in (ExecStatus.DENIED, ExecStatus.TIMEOUT, ExecStatus.KILLED)
    assert not sandbox.alive
    # The host still starts and runs sandboxes.
    assert (await (await start()).run_python("1")).value == "1"


async def test_a_shell_fork_bomb_is_contained(start_process: StartSandbox) -> None:
    sandbox = await start_process(limits={"processes": 32})
    result = await sandbox.run_shell("bomb() { bomb | bomb & }; bomb", timeout=5)
    assert result.status in (ExecStatus.DENIED, ExecStatus.TIMEOUT)


async def test_a_killed_sandbox_leaves_no_process_or_cgroup_behind(
    start_process: StartSandbox,
) -> None:
    sandbox = await start_process(limits={"processes": 32})
    process = sandbox.process  # type: ignore[attr-defined]
    assert process.cgroup is not None, "this host has writable cgroups (make install checks)"
    cgroups = list(process.cgroup.dirs)
    await sandbox.run_shell("(sleep 1000 & sleep 1000 &) >/dev/null 2>&1")
    await sandbox.run_python("import os\nwhile True:\n    os.fork()", timeout=5)
    await sandbox.kill()
    await settle_teardowns()
    assert [path for path in cgroups if path.exists()] == []
    assert process.popen.poll() is not None


async def test_writes_outside_the_workspace_are_denied(start: StartSandbox) -> None:
    sandbox = await start()
    for path in ("/usr/evil", "/etc/evil", "/evil", "/bin/python3"):
        result = await sandbox.run_python(f"open({path!r}, 'w').write('x')")
        assert result.status in (ExecStatus.DENIED, ExecStatus.ERROR), (path, result)
        assert not os.path.exists(path) or path == "/bin/python3"
    assert (await sandbox.run_python(f"open({'/usr/evil'!r}, 'w')")).status == ExecStatus.DENIED


async def test_host_files_are_out_of_sight(start: StartSandbox, tmp_path: Path) -> None:
    secret = tmp_path / "hangar.db"
    secret.write_text("the host's database")
    sandbox = await start()
    for path in ("/etc/shadow", str(secret), str(Path.home() / ".bash_history")):
        result = await sandbox.run_python(f"open({path!r}).read()")
        assert result.status in (ExecStatus.ERROR, ExecStatus.DENIED), (path, result)
        assert "the host's database" not in (result.value or "")


async def test_other_processes_are_invisible(start: StartSandbox) -> None:
    sandbox = await start()
    result = await sandbox.run_python(
        "import os\n"
        "proc = os.listdir('/proc') if os.path.isdir('/proc') else []\n"
        "pids = [int(p) for p in proc if p.isdigit()]\n"
        "sorted(pids)"
    )
    assert result.status == ExecStatus.OK, result
    visible = eval(result.value or "[]")  # a list of ints from repr
    assert os.getpid() not in visible
    assert all(pid < 100 for pid in visible), visible


async def test_no_host_environment_leaks_in(
    start: StartSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HANGAR_TEST_SECRET", "hunter2")
    sandbox = await start()
    result = await sandbox.run_python("import os\ndict(os.environ)")
    assert result.status == ExecStatus.OK
    assert "hunter2" not in (result.value or "") and "HANGAR_TEST_SECRET" not in (
        result.value or ""
    )


async def test_the_network_is_off(start: StartSandbox) -> None:
    sandbox = await start()
    code = "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=3)"
    result = await sandbox.run_python(code, timeout=10)
    assert result.status in (ExecStatus.DENIED, ExecStatus.ERROR), result
    assert result.status != ExecStatus.OK


@pytest.mark.parametrize(
    "name", ["../escape.txt", "/etc/passwd", "a/../../escape.txt", "/workspace/../etc/x", ""]
)
async def test_file_names_that_leave_the_workspace_are_refused(
    start: StartSandbox, name: str
) -> None:
    sandbox = await start()
    with pytest.raises(SandboxFileError):
        await sandbox.write_file(name, b"x")
    with pytest.raises(SandboxFileError):
        await sandbox.read_file(name)


async def test_symlinks_out_of_the_workspace_are_refused(start: StartSandbox) -> None:
    sandbox = await start()
    made = await sandbox.run_python(
        "import os\nos.symlink('/etc/passwd', 'link')\nos.symlink('/usr', 'dir')"
    )
    if made.status != ExecStatus.OK:  # a guest without symlinks cannot try this
        return
    for name in ("link", "dir/lib/os-release"):
        with pytest.raises(SandboxFileError):
            await sandbox.read_file(name)
    with pytest.raises(SandboxFileError):
        await sandbox.write_file("link", b"overwrite")


async def test_a_full_workspace_refuses_more(start: StartSandbox) -> None:
    sandbox = await start(limits={"workspaceMb": 1})
    result = await sandbox.run_python("open('big.bin', 'wb').write(b'x' * 3 * 1024 * 1024)")
    assert result.status in (ExecStatus.DENIED, ExecStatus.ERROR), result
    with pytest.raises(SandboxFileError):
        await sandbox.write_file("upload.bin", b"y" * 2 * 1024 * 1024)


NESTED_NAMESPACES = r"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
made = []
for flag in (0x10000000, 0x20000000, 0x40000000, 0x00020000):  # user, pid, net, mount
    if libc.unshare(flag) == 0:
        made.append(("unshare", hex(flag)))
    pid = libc.syscall(56, flag | 17, 0, 0, 0, 0)  # clone(flags | SIGCHLD)
    if pid == 0:
        os._exit(0)
    if pid > 0:
        os.waitpid(pid, 0)
        made.append(("clone", hex(flag)))
made
"""


async def test_no_nested_namespace_can_be_made(start_process: StartSandbox) -> None:
    """A nested user namespace would give the code every capability inside it: unshare
    and clone with a namespace flag are refused, in each process sandbox."""
    sandbox = await start_process()
    result = await sandbox.run_python(NESTED_NAMESPACES)
    assert (result.status, result.value) == (ExecStatus.OK, "[]"), result
    shell = await sandbox.run_shell("unshare -Ur id")
    assert shell.exit_code != 0 and "uid=0" not in shell.stdout


async def test_threads_and_processes_still_start(start_process: StartSandbox) -> None:
    """clone3 answers ENOSYS (bwrap's filter) or is not there (gVisor): libc falls back."""
    sandbox = await start_process()
    code = (
        "import subprocess, threading\n"
        "box = []\n"
        "t = threading.Thread(target=lambda: box.append('thread')); t.start(); t.join()\n"
        "box + [subprocess.run(['echo', 'child'], capture_output=True, text=True).stdout]"
    )
    result = await sandbox.run_python(code)
    assert result.value == "['thread', 'child\\n']", result


async def test_cpu_is_enforced_by_the_host_whatever_the_code_does_with_its_signals(
    start_process: StartSandbox,
) -> None:
    sandbox = await start_process(limits={"cpuSeconds": 1, "wallSeconds": 30})
    code = "import signal\nsignal.signal(signal.SIGPROF, signal.SIG_IGN)\nwhile True:\n    pass"
    result = await sandbox.run_python(code, timeout=25)
    assert result.status == ExecStatus.TIMEOUT, result
    # Stopped by its 1 s CPU limit (the host's watch), not by the 25 s wall timeout.
    assert "used more than 1 s of CPU" in (result.error or ""), result


async def test_a_shell_commands_cpu_is_the_kernels_to_stop(start_process: StartSandbox) -> None:
    sandbox = await start_process(limits={"cpuSeconds": 1, "wallSeconds": 30})
    result = await sandbox.run_shell("python3 -c 'while True: pass'; echo exit=$?", timeout=25)
    assert "exit=137" in result.stdout or result.status == ExecStatus.TIMEOUT, result


LIVING = "python3 -c \"import os; print(sum(p.isdigit() for p in os.listdir('/proc')))\""
"""How many processes the sandbox holds (gVisor's /proc cannot be listed by ls)."""


async def test_a_background_process_ends_with_its_call(start_process: StartSandbox) -> None:
    sandbox = await start_process()
    idle = int((await sandbox.run_shell(LIVING)).stdout)
    started = await sandbox.run_shell("sleep 300 &\necho started")
    assert (started.status, started.stdout) == (ExecStatus.OK, "started\n"), started
    assert int((await sandbox.run_shell(LIVING)).stdout) == idle
    cell = await sandbox.run_python("import subprocess\nsubprocess.Popen(['sleep', '300'])\n1")
    assert cell.status == ExecStatus.OK
    assert int((await sandbox.run_shell(LIVING)).stdout) == idle


async def test_a_template_may_keep_background_processes(start_process: StartSandbox) -> None:
    sandbox = await start_process(background="keep")
    idle = int((await sandbox.run_shell(LIVING)).stdout)
    await sandbox.run_shell("sleep 300 &")
    assert int((await sandbox.run_shell(LIVING)).stdout) == idle + 1
