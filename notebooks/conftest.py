"""pytest/nbval settings for the tutorial notebooks.

Plain ``pytest`` runs every notebook in fast mode (few iterations, small images), so that all of them
finish in a few minutes on a CPU. The kernel that nbval starts inherits this process's environment.
Set ``DEIMV2_FAST=0`` to run them with the full demo schedule instead.
"""
import os

os.environ.setdefault("DEIMV2_FAST", "1")
