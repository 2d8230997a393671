"""Everything about weight files, in one package.

- :mod:`.formats` — :class:`Format` detection, variant and class count of a state dict.
- :mod:`.keys` — all key renaming (official <-> transformers port, DINOv3 Hugging Face -> Meta).
- :mod:`.port_config` — the transformers port's ``config.json`` <-> variants.
- :mod:`.loader` — reading files safely and loading them (strict, fine-tuning, backbone).

The variant table itself is plain data in :mod:`deimv2.variants` (below ``config``, which reads it).
Layering: this package may import ``config``, ``variants`` and ``models``; ``models`` never import it, and it never
imports ``engine``, ``predict`` or ``cli``. Names below are imported lazily. Explained in notebook ``01_weights.ipynb``.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Format": "formats",
    "detect_format": "formats",
    "variant_of_state_dict": "formats",
    "num_classes_of_state_dict": "formats",
    "backbone_file_variant": "formats",
    "is_transformers_port": "formats",
    "convert_transformers_port": "keys",
    "to_transformers_port": "keys",
    "convert_hf_dinov3_to_meta": "keys",
    "port_config_for_variant": "port_config",
    "port_config_to_variant": "port_config",
    "CheckpointInfo": "loader",
    "LoadReport": "loader",
    "read_weights_file": "loader",
    "extract_detector_state": "loader",
    "inspect_weights": "loader",
    "fill_shared_keys": "loader",
    "load_detector_state": "loader",
    "load_state_strict": "loader",
    "load_weights": "loader",
    "load_for_finetune": "loader",
    "load_backbone_weights": "loader",
    "expected_backbone_path": "loader",
    "missing_backbone_error": "loader",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
