"""deimv2 — DEIMv2 中文教程的 Python 包：模型、训练、评估、推理、数据集工具。

Top-level names are imported lazily so ``import deimv2`` stays fast.
"""

from __future__ import annotations

import importlib

from .log import install_console_handler

__version__ = "0.1.0"

# messages of the library go through logging.getLogger("deimv2…"); shown like print (silence: deimv2/log.py)
install_console_handler()

_EXPORTS = {
    "build_model": "deimv2.models.build",
    "build_postprocessor": "deimv2.models.build",
    "build_criterion": "deimv2.loss",
    "load_config": "deimv2.config",
    "save_config": "deimv2.config",
    "VARIANTS": "deimv2.config",
    "train": "deimv2.engine.trainer",
    "evaluate": "deimv2.engine.trainer",
    "load_weights": "deimv2.checkpoints",
    "load_backbone_weights": "deimv2.checkpoints",
    "inspect_weights": "deimv2.checkpoints",
    "Detector": "deimv2.predict",
    "export_onnx": "deimv2.export",
    "checks": "deimv2.checks",
    "draw_detections": "deimv2.draw",
    "show_grid": "deimv2.draw",
    "setup_matplotlib_cjk": "deimv2.fonts",
    "yolo_to_coco": "deimv2.data.convert",
    "coco_to_yolo": "deimv2.data.convert",
    "check_dataset": "deimv2.data.doctor",
    "run_demo": "deimv2.demo",
    "plot_training_curves": "deimv2.engine.logger",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'deimv2' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
