"""pytest/nbval settings for the tutorial notebooks.

Plain ``pytest`` runs every notebook in fast mode (few iterations, small images), so that all of them
finish in about a minute on a CPU. The kernels that nbval starts inherit this process's environment.
Set ``DEIMV2_FAST=0`` to run them with the full demo schedule instead.

The kernels also default to one OpenMP thread: on a busy CI machine two threads per kernel made the
fast run 5x slower (threads waiting for each other), while on an idle one they gain little at these sizes.
Set ``OMP_NUM_THREADS`` yourself to override.
"""

import os

os.environ.setdefault("DEIMV2_FAST", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
