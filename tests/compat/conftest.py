"""Fixtures for the compat tests: tests/python's (shm_name, mp_context) and
``run_example``, which runs a README example of tests/compat/examples/ as a
script in a fresh interpreter.

An example runs as written except that its import names shmkit.compat and
the segment names it uses get a unique suffix, so that a run never touches
a segment someone else named the same; every one of them is removed
afterwards."""
import importlib.util
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import shmkit

HERE = Path(__file__).parent
EXAMPLES = HERE / "examples"

_spec = importlib.util.spec_from_file_location("_python_conftest", HERE.parent / "python" / "conftest.py")
_python_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_python_conftest)
shm_name = _python_conftest.shm_name
mp_context = _python_conftest.mp_context
unique_name = _python_conftest.unique_name


def run_processes(ctx, target, args_list, timeout=120):
    """Start one ``ctx`` process per args tuple, join them, and check that
    each exited cleanly."""
    procs = [ctx.Process(target=target, args=args) for args in args_list]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    assert [p.exitcode for p in procs] == [0] * len(procs)


def _unlink_quietly(name: str) -> None:
    try:
        shmkit.unlink(name)
    except FileNotFoundError:
        pass


@pytest.fixture
def run_example(tmp_path):
    """run_example(file, names, method="fork", edit=None) -> stdout.

    ``names``: the segment names the example uses (as quoted in it, e.g.
    "/work_queue"); ``edit``: a function applied to the source after the
    renaming (for a change the test documents)."""
    made = []

    def run(file, names, method="fork", edit=None):
        src = (EXAMPLES / file).read_text()
        for name in names:
            slash = "/" if name.startswith("/") else ""
            new = unique_name(name.strip("/")[:20])
            made.append(new)
            assert f'"{name}"' in src or f"'{name}'" in src, f"{name!r} is not quoted in {file}"
            src = src.replace(f'"{name}"', f'"{slash}{new}"').replace(f"'{name}'", f"'{slash}{new}'")
        if edit:
            src = edit(src)
        script = tmp_path / f"{uuid.uuid4().hex[:8]}_{file}"
        script.write_text(src)
        proc = subprocess.run([sys.executable, str(HERE / "run_example.py"), method, str(script)],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert proc.returncode == 0, f"{file} ({method}) failed:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    yield run
    for name in made:
        _unlink_quietly(name)
