"""The one rule for a bad box, shared by the doctor (``deimv2 check``), the training dataset and the converters.

Policy (``docs/errors.md``): a COCO box ``[x, y, w, h]`` that is not four finite numbers, has a negative or zero
width/height, or lies entirely outside its image is an ERROR everywhere, reported by annotation id; nothing is
dropped quietly. A box that sticks out of the image only partly is clipped to the image (a warning in the doctor).
YOLO coordinates must be fractions of the image size in [0, 1] (up to :data:`YOLO_TOLERANCE`).
Explained in notebook 02_convert.ipynb.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["YOLO_TOLERANCE", "bbox_problem", "yolo_coordinate_problem"]

#: how far outside [0, 1] a normalised YOLO value may be (rounding of exporters) before it is an error
YOLO_TOLERANCE = 0.01


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def bbox_problem(bbox: Any, image_size: tuple[float, float] | None = None) -> str | None:
    """None for a usable COCO ``[x, y, w, h]``; else the Chinese reason. ``image_size`` is (w, h) when known."""
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        return "bbox 不是 4 个数字 [x, y, w, h]"
    if not all(math.isfinite(float(v)) for v in bbox):
        return "bbox 中有 NaN 或 inf"
    x, y, w, h = (float(v) for v in bbox)
    if w < 0 or h < 0:
        return "宽或高是负数"
    if w == 0 or h == 0:
        return "宽或高为 0（面积为 0）"
    if image_size is not None:
        iw, ih = image_size
        if min(x + w, iw) <= max(x, 0.0) or min(y + h, ih) <= max(y, 0.0):
            return f"框完全在图像（{iw}x{ih}）之外"
    return None


def yolo_coordinate_problem(values: list[float]) -> str | None:
    """None when every normalised YOLO coordinate is in [0, 1] (± tolerance); else the Chinese reason."""
    bad = [v for v in values if v < -YOLO_TOLERANCE or v > 1 + YOLO_TOLERANCE]
    if not bad:
        return None
    hint = "，看起来是像素坐标" if any(v > 1.5 for v in bad) else ""
    return (
        f"坐标 {bad[0]:g} 超出 [0, 1]{hint}：YOLO 格式的 cx cy w h 是相对图像宽、高的比例（0–1）。"
        "请把像素值除以图像的宽和高，或在标注工具中导出“YOLO（归一化坐标）”格式"
    )
