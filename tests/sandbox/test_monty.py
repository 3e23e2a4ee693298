"""The monty backend: the session and hostile cases that apply to a Python subset
without processes, network or host files."""

from __future__ import annotations

import pytest

from hangar.errors import SandboxFileError
from hangar.sandbox.base import ExecStatus
from tests.sandbox.conftest import StartSandbox


async def test_state_values_tracebacks_and_output(start_monty: StartSandbox) -> None:
    sandbox = await start_monty()
    assert (await sandbox.run_python("x = 40")).status == ExecStatus.OK
    result = await sandbox.run_python("print('adding')\nx + 2")
    assert (result.status, result.value, result.stdout) == (ExecStatus.OK, "42", "adding\n")
    failed = await sandbox.run_python("def f():\n    raise ValueError('bad')\nf()")
    assert failed.status == ExecStatus.ERROR and failed.error == "ValueError: bad"
    assert failed.traceback and "f()" in failed.traceback


async def test_files_in_the_workspace(start_monty: StartSandbox) -> None:
    sandbox = await start_monty()
    await sandbox.write_file("in.txt", b"21")
    result = await sandbox.run_python(
        "n = int(open('/workspace/in.txt').read())\n"
        "open('/workspace/out.txt', 'w').write(str(n * 2))"
    )
    assert result.files == ("out.txt",)
    assert await sandbox.read_file("out.txt") == b"42"


async def test_pure_computation_makes_no_workspace_until_files_are_named(
    start_monty: StartSandbox,
) -> None:
    sandbox = await start_monty()
    assert (await sandbox.run_python("total = sum(range(10))\ntotal")).value == "45"
    assert not sandbox.has_workspace  # type: ignore[attr-defined]
    # Reaching files by a name built at run time still finds the workspace...
    built = await sandbox.run_python("eval('op' + 'en')('a.txt', 'w').write('x')")
    assert built.status == ExecStatus.OK and built.files == ("a.txt",)
    # ...and once there, it stays: a later cell uses what an earlier one bound.
    fresh = await start_monty()
    bound = await fresh.run_python("from pathlib import Path\np = Path('b.txt')")
    assert bound.status == ExecStatus.OK
    later = await fresh.run_python("p.write_text('y')\ntotal = 1")
    assert later.status == ExecStatus.OK and later.files == ("b.txt",)
    assert await fresh.read_file("b.txt") == b"y"


async def test_hostile_cases(start_monty: StartSandbox) -> None:
    limits = {"wallSeconds": 1, "memoryMb": 64, "outputBytes": 10_000}
    looping = await start_monty(limits=limits)
    assert (await looping.run_python("while True:\n    pass")).status == ExecStatus.TIMEOUT
    assert not looping.alive  # a stopped heap is not trusted again
    bomb = "blocks = []\nwhile True:\n    blocks.append('x' * 1_000_000)"
    assert (await (await start_monty(limits=limits)).run_python(bomb)).status == ExecStatus.OOM
    sandbox = await start_monty(limits={"outputBytes": 10_000})
    spam = await sandbox.run_python("for i in range(100000):\n    print('spam' * 20)")
    assert spam.status == ExecStatus.OUTPUT_TRUNCATED and len(spam.stdout) <= 10_000
    for code in ("open('/etc/passwd').read()", "open('/usr/evil', 'w').write('x')"):
        assert (await sandbox.run_python(code)).status == ExecStatus.DENIED, code
    assert (await sandbox.run_shell("ls")).status == ExecStatus.DENIED
    assert (await sandbox.run_python("1 + 1")).value == "2"  # still serving


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/passwd", "a/../../x"])
async def test_file_names_that_leave_the_workspace_are_refused(
    start_monty: StartSandbox, name: str
) -> None:
    sandbox = await start_monty()
    with pytest.raises(SandboxFileError):
        await sandbox.write_file(name, b"x")
