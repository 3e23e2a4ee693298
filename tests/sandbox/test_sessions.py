"""A sandbox is a stateful code-interpreter session, the same on every backend."""

from __future__ import annotations

from hangar.sandbox.base import ExecStatus
from tests.sandbox.conftest import StartSandbox


async def test_variables_persist_and_the_last_expression_is_the_value(start: StartSandbox) -> None:
    sandbox = await start()
    assert (await sandbox.run_python("x = 40")).status == ExecStatus.OK
    result = await sandbox.run_python("print('adding'); x + 2")
    assert (result.status, result.value, result.stdout) == (ExecStatus.OK, "42", "adding\n")
    assert (await sandbox.run_python("def f(n): return n * x\nf(2)")).value == "80"


async def test_an_exception_comes_back_with_its_traceback(start: StartSandbox) -> None:
    sandbox = await start()
    result = await sandbox.run_python("def boom():\n    raise ValueError('bad input')\nboom()")
    assert result.status == ExecStatus.ERROR
    assert result.error == "ValueError: bad input"
    assert result.traceback is not None and "boom" in result.traceback
    assert (await sandbox.run_python("1 + 1")).value == "2"  # the session goes on


async def test_files_a_cell_writes_are_listed_and_readable(start: StartSandbox) -> None:
    sandbox = await start()
    result = await sandbox.run_python(
        "import os\nos.makedirs('out', exist_ok=True)\n"
        "open('out/report.csv', 'w').write('a,b\\n1,2\\n')"
    )
    assert result.files == ("out/report.csv",)
    assert await sandbox.read_file("out/report.csv") == b"a,b\n1,2\n"
    info = await sandbox.write_file("data/input.txt", b"hello")
    assert (info.path, info.size) == ("data/input.txt", 5)
    assert (await sandbox.run_python("open('data/input.txt').read().upper()")).value == "'HELLO'"
    assert {f.path for f in await sandbox.list_files()} == {"out/report.csv", "data/input.txt"}


async def test_a_plot_saved_as_png_is_an_output_file(start: StartSandbox) -> None:
    # matplotlib's first import builds its font cache: seconds of CPU, more under
    # gVisor on a loaded machine than the default 10 s allows.
    sandbox = await start(limits={"cpuSeconds": 60, "wallSeconds": 60})
    code = (
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3], [1, 4, 9])\nplt.savefig('plot.png')"
    )
    result = await sandbox.run_python(code, timeout=60)
    assert result.status == ExecStatus.OK, result.error
    assert "plot.png" in result.files
    assert (await sandbox.read_file("plot.png"))[:8] == b"\x89PNG\r\n\x1a\n"


async def test_shell_commands_run_in_the_workspace(start: StartSandbox) -> None:
    sandbox = await start()
    result = await sandbox.run_shell("echo hi > note.txt && cat note.txt && exit 3")
    if start.backend == "wasm":  # type: ignore[attr-defined]
        assert result.status == ExecStatus.DENIED and "no shell" in (result.error or "")
        return
    assert (result.status, result.stdout, result.exit_code) == (ExecStatus.ERROR, "hi\n", 3)
    assert result.files == ("note.txt",)


async def test_the_shell_runner_is_read_in_only_when_a_command_runs(
    start_process: StartSandbox,
) -> None:
    """The kernel's process code is a second file beside it (``kernel_processes.py``),
    read in on first use: a sandbox that only runs Python never compiles it."""
    sandbox = await start_process()
    loaded = "import sys\n'run_shell' in vars(sys.modules['__main__'])"
    assert (await sandbox.run_python(loaded)).value == "False"
    assert (await sandbox.run_shell("echo hi")).stdout == "hi\n"
    assert (await sandbox.run_python(loaded)).value == "True"


async def test_output_leaves_while_the_cell_still_runs(start_any: StartSandbox) -> None:
    """Two chunks, not one: 'first' left the sandbox before 'second' was printed,
    a second and a half later (after the cell ends, output merges into one)."""
    sandbox = await start_any()
    chunks: list[tuple[str, str]] = []

    async def on_output(stream: str, text: str) -> None:
        chunks.append((stream, text))

    code = "import time\nprint('first')\ntime.sleep(1.5)\nprint('second')"
    result = await sandbox.run_python(code, on_output=on_output)
    assert result.status == ExecStatus.OK, result
    assert result.stdout == "first\nsecond\n"
    assert chunks == [("stdout", "first\n"), ("stdout", "second\n")]
