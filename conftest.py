"""pytest setup shared by every test folder (``tests/`` and, through nbval, ``notebooks/``).

No test touches the network: with ``HF_HUB_OFFLINE=1`` (the Hugging Face hub's own switch, honoured by
:mod:`deimv2.weights.hub`, huggingface_hub and transformers) no HTTP(S) request is made. Notebook kernels, CLI
subprocesses and the browser test's Jupyter server inherit it, so a slow or half-open network can neither stall a
test nor change what it runs (the offline branches of notebooks 01 and 04 are what runs). The download code
itself is tested against a local ``file://`` hub (tests/weights/test_hub.py).
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

# OpenVINO's usage statistics (openvino-telemetry, on by default) are sent on every ``import openvino`` and model
# conversion by forking the running process from a background thread, one fork per event, for seconds after the
# call. A fork taken while another thread of the same process runs NumPy's BLAS can leave the parent spinning
# forever, and no test should reach the network. OpenVINO sends nothing where CI=true (its switch for CI machines);
# kernels and subprocesses inherit it (tests/apps/test_no_telemetry.py).
os.environ.setdefault("CI", "true")

# Under pytest-xdist (README's `pytest -n auto`) every worker gets an equal share of the cores: torch in the worker,
# its subprocesses and notebook kernels all read OMP_NUM_THREADS (set here, before anything imports torch).
if os.environ.get("PYTEST_XDIST_WORKER"):
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _workers)))

#: the test that runs the notebooks' cells in one process when the other tests are spread over xdist workers
NOTEBOOKS_IN_ONE_PROCESS = "tests/notebooks/test_notebooks_fast.py"


def pytest_collection_modifyitems(config, items):
    """The notebooks' cells (nbval) run exactly once: directly, cell after cell in one kernel per notebook, or, on
    xdist workers (which would split a notebook's cells), all together in :data:`NOTEBOOKS_IN_ONE_PROCESS`."""
    cells = [i for i in items if str(i.fspath).endswith(".ipynb")]
    runner = [i for i in items if i.nodeid.startswith(NOTEBOOKS_IN_ONE_PROCESS)]
    on_worker = hasattr(config, "workerinput")
    drop = cells if (on_worker and runner) else runner if (cells and not on_worker) else []
    if drop:
        dropped = set(map(id, drop))
        items[:] = [i for i in items if id(i) not in dropped]
        config.hook.pytest_deselected(items=drop)
    if on_worker and runner:  # the longest test file goes to a worker first, not last
        items[:] = runner + [i for i in items if i not in runner]
