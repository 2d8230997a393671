"""Every notebook in fast mode (nbval: each cell runs and its outputs are checked loosely), in one process.

A plain ``pytest`` collects the notebooks' cells directly and does not run this test; README's ``pytest -n auto``
(pytest-xdist) would split a notebook's cells over workers, so there the cells are left out and this test runs them
all, in order, in a ``pytest`` of its own (the root ``conftest.py`` decides which of the two runs).
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_notebook_runs_in_fast_mode():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "notebooks")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=2100)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout
