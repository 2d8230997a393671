"""pytest setup shared by every test folder (``tests/`` and, through nbval, ``notebooks/``).

No test touches the network: with ``HF_HUB_OFFLINE=1`` (the Hugging Face hub's own switch, honoured by
:mod:`deimv2.weights.hub`, huggingface_hub and transformers) no HTTP(S) request is made. Notebook kernels, CLI
subprocesses and the browser test's Jupyter server inherit it, so a slow or half-open network can neither stall a
test nor change what it runs (the offline branches of notebooks 01 and 04 are what runs). The download code
itself is tested against a local ``file://`` hub (tests/weights/test_hub.py).
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
