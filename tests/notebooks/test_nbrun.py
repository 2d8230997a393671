"""tests/helpers/nbrun.py, the "Run All" runner of the slow notebook tests: a hanging cell fails with its notebook and cell named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat

RUNNER = Path(__file__).parents[1] / "helpers" / "nbrun.py"


def _notebook(folder: Path, name: str, *sources: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, folder / name)


def _nbrun(folder: Path, timeout_s: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEIMV2_CELL_TIMEOUT": str(timeout_s), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(RUNNER), str(folder)], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_hanging_cell_fails_with_the_notebook_and_cell_named(tmp_path):
    folder = tmp_path / "笔记 本"
    folder.mkdir()
    _notebook(folder, "01_ok.ipynb", "x = 1 + 1\nprint(x)")
    _notebook(folder, "02_hang.ipynb", "y = 2", "import time\ntime.sleep(600)", "print('never')")
    proc = _nbrun(folder, timeout_s=5)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "ok 01_ok.ipynb" in proc.stdout
    assert "FAILED 02_hang.ipynb (TIMEOUT after 5 s" in proc.stdout
    assert "cell 1: import time" in proc.stdout
    saved = nbformat.read(folder / "01_ok.ipynb", as_version=4)
    assert saved.cells[0].outputs[0]["text"] == "2\n"  # executed notebooks are saved with their outputs


def test_an_error_fails_with_the_notebook_named(tmp_path):
    _notebook(tmp_path, "03_error.ipynb", "raise ValueError('坏了')")
    proc = _nbrun(tmp_path, timeout_s=60)
    assert proc.returncode == 1
    assert "FAILED 03_error.ipynb (ERROR" in proc.stdout and "坏了" in proc.stdout


def test_sliced_polls_find_a_waiting_message_without_waiting_out_the_timeout():
    """A poll that only returns when its whole time-out runs out (the missed wake-up seen in notebook 05's slider
    cell) must not hold a waiting reply back: the runner polls in 1-second slices."""
    import asyncio
    import importlib.util
    import time
    from queue import Empty

    spec = importlib.util.spec_from_file_location("nbrun", RUNNER)
    nbrun = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nbrun)
    ready_at = time.monotonic() + 0.2

    class Channel:
        async def get_msg(self, timeout=None):
            await asyncio.sleep(timeout)  # never wakes up early, even when a message arrives meanwhile
            if time.monotonic() >= ready_at:
                return {"msg_type": "execute_reply"}
            raise Empty

    ch = Channel()
    nbrun._sliced(ch)
    t0 = time.monotonic()
    assert asyncio.run(ch.get_msg(timeout=60))["msg_type"] == "execute_reply"
    assert time.monotonic() - t0 < 5  # unsliced: 60 s

    empty = Channel()
    ready_at = float("inf")
    nbrun._sliced(empty)
    t0 = time.monotonic()
    try:
        asyncio.run(empty.get_msg(timeout=2.5))
        raise AssertionError("an empty socket must still raise Empty")
    except Empty:
        pass
    assert 2.4 < time.monotonic() - t0 < 5  # the caller's whole time-out, no more
