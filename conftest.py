"""pytest setup shared by every test folder (``tests/`` and, through nbval, ``notebooks/``).

No test touches the network: with ``HF_HUB_OFFLINE=1`` (the Hugging Face hub's own switch, honoured by
:mod:`deimv2.weights.hub`, huggingface_hub and transformers) no HTTP(S) request is made. Notebook kernels, CLI
subprocesses and the browser test's Jupyter server inherit it, so a slow or half-open network can neither stall a
test nor change what it runs (the offline branches of notebooks 01 and 04 are what runs). The download code
itself is tested against a local ``file://`` hub (tests/weights/test_hub.py).
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

# Under pytest-xdist (``-n auto`` in pyproject's addopts) every worker gets an equal share of the cores: torch in the
# worker, its notebook kernels and its subprocesses all read OMP_NUM_THREADS (set before anything imports torch).
if os.environ.get("PYTEST_XDIST_WORKER"):
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _workers)))


def pytest_collection_modifyitems(config, items):
    """With ``--dist loadgroup``: one worker runs a whole test file, and one worker runs every notebook in order
    (05 and 06 use the run that 04 trained)."""
    import pytest

    for item in items:
        path = str(item.fspath)
        item.add_marker(pytest.mark.xdist_group("notebooks" if path.endswith(".ipynb") else path))
