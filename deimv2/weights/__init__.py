"""Everything about weight files (pretrained, official, ported), in one package.

- :mod:`.formats` — :class:`Format` detection, variant and class count of a state dict.
- :mod:`.keys` — all key renaming (official <-> transformers port, DINOv3 Hugging Face -> Meta).
- :mod:`.port_config` — the transformers port's ``config.json`` <-> variants.
- :mod:`.hub` — downloading the official COCO checkpoints and HGNetv2 backbones.
- :mod:`.load` — reading files safely and loading them (strict, fine-tuning, backbone).

The variant table itself is plain data in :mod:`deimv2.config.variants` (below ``config``, which reads it).
Layering: this package may import ``config``, ``variants`` and ``models``; ``models`` never import it, and it never
imports ``engine``, ``predict`` or ``cli``. Names below are imported lazily. Explained in notebook ``01_weights.ipynb``.
"""

from __future__ import annotations

import lazy_loader

# name -> defining submodule, imported on first use (lazy_loader: the scientific-Python convention)
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "formats": [
            "Format",
            "detect_format",
            "variant_of_state_dict",
            "num_classes_of_state_dict",
            "backbone_file_variant",
            "is_transformers_port",
        ],
        "keys": ["convert_transformers_port", "to_transformers_port", "convert_hf_dinov3_to_meta"],
        "port_config": ["port_config_for_variant", "port_config_to_variant"],
        "load": [
            "CheckpointInfo",
            "LoadReport",
            "read_weights_file",
            "extract_detector_state",
            "inspect_weights",
            "fill_shared_keys",
            "load_detector_state",
            "load_state_strict",
            "load_weights",
            "load_for_finetune",
            "load_backbone_weights",
            "expected_backbone_path",
            "missing_backbone_error",
        ],
    },
)
