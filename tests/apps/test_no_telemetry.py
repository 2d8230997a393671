"""The test session sends no OpenVINO usage statistics (root conftest.py sets CI=true).

openvino-telemetry sends each event by forking the process from a background thread. A fork taken while another
thread runs NumPy's BLAS can leave the parent spinning forever, and a test must not reach the network. Every
process a test starts (CLI runs, notebook kernels, the browser test's Jupyter server) inherits the switch, so this
is checked in a fresh subprocess.
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("openvino")
pytest.importorskip("openvino_telemetry")

SCRIPT = textwrap.dedent("""
    import multiprocessing
    forks = []
    _start = multiprocessing.Process.start
    multiprocessing.Process.start = lambda self: (forks.append(self._target), _start(self))[1]
    import openvino as ov, torch, openvino_telemetry
    ov.convert_model(torch.nn.Conv2d(3, 4, 3), example_input=torch.rand(1, 3, 16, 16))
    print("forks", len(forks), "consent", openvino_telemetry.Telemetry().consent)
""")


def test_openvino_sends_nothing_from_test_processes():
    assert os.environ.get("CI") == "true"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "forks 0 consent False"
