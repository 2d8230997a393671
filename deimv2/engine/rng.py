"""Every random-number state training consumes, as a checkpoint-safe dict (bit-exact resume).

Training draws random numbers from: Python's ``random`` (augmentations, Mosaic, multi-scale collate), NumPy,
the global torch generator (denoising queries in the decoder; CUDA too on GPU), and the train loader's own
``torch.Generator`` (shuffling order and the per-epoch base seed of the workers: worker ``i`` is seeded with
``base_seed + i`` by :func:`deimv2.data.loader.seed_worker`). Workers restart every epoch, so an epoch's data
depends only on these states at its start. Explained in notebook ``04_train.ipynb`` (继续训练).

All values are tensors, ints, tuples and strings: ``torch.load(weights_only=True)`` reads them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["capture_rng_state", "restore_rng_state"]


def capture_rng_state(loader_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Snapshot of Python, NumPy, torch (CPU and every CUDA device) and the train loader's generator."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": int(version), "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if loader_generator is not None:
        state["loader"] = loader_generator.get_state()
    return state


def restore_rng_state(state: Mapping[str, Any], loader_generator: torch.Generator | None = None) -> None:
    """Put back what :func:`capture_rng_state` recorded (CUDA states only when the device count matches)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    if loader_generator is not None and state.get("loader") is not None:
        loader_generator.set_state(state["loader"])
