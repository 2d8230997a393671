"""``supervision.Detections`` from our predictions (``pip install "deimv2[apps]"``).

Boxes are xyxy pixels of the original image, ``confidence`` the scores, ``class_id`` the 0-based class index
and ``data["class_name"]`` the class names, the key supervision's annotators read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deimv2.errors import DEIMv2Error

__all__ = ["APPS_INSTALL", "require", "to_detections"]

APPS_INSTALL = 'pip install "deimv2[apps]"'


def require(module: str, feature: str) -> Any:
    """Import an optional package of the ``apps`` extra, or raise a Chinese error naming the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise DEIMv2Error(
            f"{feature}需要 Python 包 {module.split('.')[0]}（缺少 {e.name}）。请运行 {APPS_INSTALL}。"
        ) from None


def to_detections(boxes: Any, scores: Any, labels: Any, names: Any) -> Any:
    """``sv.Detections`` of N boxes (xyxy), scores, 0-based labels and the N class names."""
    sv = require("supervision", "转换为 supervision 格式")
    xyxy = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return sv.Detections(
        xyxy=xyxy,
        confidence=np.asarray(scores, dtype=np.float32).reshape(-1),
        class_id=np.asarray(labels, dtype=np.int64).reshape(-1),
        data={"class_name": np.asarray(list(names), dtype=object).reshape(-1)},
    )
