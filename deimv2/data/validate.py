"""The one rule for a bad box, shared by the doctor (``deimv2 doctor``), the training dataset and the converters.

Policy (``docs/errors.md``): a COCO box ``[x, y, w, h]`` that is not four finite numbers, has a negative or zero
width/height, or lies entirely outside its image is an ERROR everywhere, reported by annotation id; nothing is
dropped quietly. A box that sticks out of the image only partly is clipped to the image (a warning in the doctor).
YOLO coordinates must be fractions of the image size in [0, 1] (up to :data:`YOLO_TOLERANCE`).
Explained in notebook 02_convert.ipynb.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "YOLO_TOLERANCE",
    "bbox_problem",
    "coco_image_path",
    "empty_split_problem",
    "shared_images_problem",
    "yolo_coordinate_problem",
]

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


# ---------------------------------------------------------------------------------------------- whole splits
# The same rules for the doctor (``deimv2 doctor``), the converters and the trainer's data set-up: what one accepts,
# the others accept (docs/errors.md).
def coco_image_path(folder: Path, file_name: str) -> Path:
    """Where a COCO ``file_name`` is: relative to the image folder; a Windows path (``images\\x.jpg``) is read with
    ``/`` when the name as written does not exist."""
    path = Path(folder) / file_name
    if "\\" in file_name and not path.exists():
        path = Path(folder) / file_name.replace("\\", "/")
    return path


def empty_split_problem(split: str, boxes: int, crowd: int, where: object) -> str | None:
    """A Chinese error when a ``train`` or validation split has no box to learn from or to score against
    (``boxes`` usable boxes, ``crowd`` iscrowd=1 boxes, which training and COCO evaluation ignore); else None."""
    if boxes > 0:
        return None
    what = f"全部 {crowd} 个标注都是 iscrowd=1（训练和评估都会忽略它们）" if crowd else "没有任何标注框"
    if split == "train":
        return (
            f"训练集 {where} {what}，模型没有可以学习的目标。修复：检查导出的标注是否完整"
            "（YOLO 的 labels/ 文件夹、COCO 的 annotations 列表），或把 iscrowd 改为 0。"
        )
    return (
        f"验证集 {where} {what}，COCO 评估算不出 AP（会得到 -1），best.pth 也不会被写出。"
        "修复：给验证集补上标注，或换一个有标注的验证集（没有时可用 deimv2 yolo2coco --split-ratio 0.2 分出一部分）。"
    )


def shared_images_problem(splits: Mapping[str, Iterable[Path]]) -> str | None:
    """A Chinese error when two splits share image files (``train`` and ``val`` the same folder …); else None."""
    resolved = {s: {Path(p).resolve() for p in paths} for s, paths in splits.items()}
    names = list(resolved)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = resolved[a] & resolved[b]
            if not both:
                continue
            same = "是同一批图像" if resolved[a] == resolved[b] else f"有 {len(both)} 张相同的图像"
            return (
                f"{a} 和 {b} {same}（例如 {min(both)}）：验证集必须是训练时没见过的图像，否则 AP 虚高，"
                f"best.pth 和早停都不可信。修复：让 {b} 指向另一批图像；"
                "没有验证集时可用 deimv2 yolo2coco --split-ratio 0.2 从训练集中分出一部分。"
            )
    return None
