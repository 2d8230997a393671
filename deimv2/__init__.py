"""deimv2 — DEIMv2 中文教程的 Python 包：模型、训练、评估、推理、数据集工具。

Top-level names are imported lazily so ``import deimv2`` stays fast.
"""

from __future__ import annotations

import importlib

from deimv2.utils.log import install_console_handler

__version__ = "0.1.0"

# messages of the library go through logging.getLogger("deimv2…"); shown like print (silence: deimv2/utils/log.py)
install_console_handler()

_EXPORTS = {
    "build_model": "deimv2.models.build",
    "build_postprocessor": "deimv2.models.build",
    "build_criterion": "deimv2.loss",
    "load_config": "deimv2.config.loader",
    "save_config": "deimv2.config.loader",
    "VARIANTS": "deimv2.config.loader",
    "train": "deimv2.engine.api",
    "evaluate": "deimv2.engine.api",
    "load_weights": "deimv2.weights",
    "load_backbone_weights": "deimv2.weights",
    "inspect_weights": "deimv2.weights",
    "Detector": "deimv2.infer.detector",
    "export_onnx": "deimv2.infer.export",
    "checks": "deimv2.tutorial.environment",
    "draw_detections": "deimv2.infer.draw",
    "show_grid": "deimv2.infer.draw",
    "setup_matplotlib_cjk": "deimv2.utils.fonts",
    "yolo_to_coco": "deimv2.data.convert",
    "coco_to_yolo": "deimv2.data.convert",
    "check_dataset": "deimv2.data.doctor",
    "run_demo": "deimv2.tutorial.demo",
    "plot_training_curves": "deimv2.engine.logger",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'deimv2' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
