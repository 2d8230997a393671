"""Tiled (sliced) inference for small objects in large images, with supervision's ``InferenceSlicer``.

A large image resized to the model's input (e.g. 2048² → 640²) shrinks a 16-pixel object to 5 pixels, too small
to detect. Tiled inference cuts the image into overlapping ``tile × tile`` pieces (the last row and column are
aligned with the image border, so every piece is full size), runs them through the detector in batches, moves
the boxes back to image pixels, adds the detections of the whole (resized) image so that large objects cut by a
tile border are still found, and merges everything by class: NMS (non-maximum suppression, keep the best box)
or NMM (non-maximum merge, join the boxes) at IoU :data:`TILE_IOU`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from deimv2.errors import ConfigError
from deimv2.infer.interop import require

__all__ = ["MERGES", "TILE_IOU", "check_tiling", "tile_offsets", "tiled_detections"]

#: IoU above which two same-class boxes from different tiles are merged (supervision's default)
TILE_IOU = 0.5
MERGES = ("nms", "nmm")


def check_tiling(tile: Any, overlap: Any, merge: str = "nms", iou: float = TILE_IOU) -> tuple[int, float]:
    """Validate the tiling options; returns ``(tile, overlap)`` or raises a Chinese :class:`ConfigError`."""
    try:
        tile_i, overlap_f = int(tile), float(overlap)
    except (TypeError, ValueError):
        raise ConfigError(
            f"分块推理参数无效：tile={tile!r}、overlap={overlap!r}。tile 是像素整数（如 640），overlap 是 0~0.9 的比例（如 0.2）。"
        ) from None
    if tile_i < 32:
        raise ConfigError(f"分块大小 tile={tile_i} 太小：至少 32 像素，一般取模型输入尺寸（如 640）。")
    if not 0.0 <= overlap_f < 0.9:
        raise ConfigError(
            f"分块重叠 overlap={overlap_f:g} 超出范围：应为 0~0.9 之间的比例（如 0.2 表示相邻两块重叠 20%）。"
        )
    if merge not in MERGES:
        raise ConfigError(f"未知的合并方式 merge={merge!r}：可选 nms（保留最高分的框）或 nmm（合并重叠的框）。")
    if not 0.0 < float(iou) <= 1.0:
        raise ConfigError(f"合并用的 IoU 阈值 iou={iou} 应在 (0, 1] 之间（默认 {TILE_IOU}）。")
    return tile_i, overlap_f


def tile_offsets(width: int, height: int, tile: int, overlap: float) -> np.ndarray:
    """The tiles' ``(x1, y1, x2, y2)`` rows, as supervision's ``InferenceSlicer`` cuts them."""
    sv = require("supervision", "分块推理")
    step = int(round(tile * overlap))
    return sv.InferenceSlicer._generate_offset((width, height), (tile, tile), (step, step))


def tiled_detections(
    image: np.ndarray,
    run: Callable[[list[np.ndarray]], list[Any]],
    tile: int = 640,
    overlap: float = 0.2,
    merge: str = "nms",
    iou: float = TILE_IOU,
    full_image: bool = True,
    batch_size: int = 8,
) -> Any:
    """Merged ``sv.Detections`` (image pixels) of ``image`` (RGB ``(H, W, 3)``) cut into tiles.

    ``run``: a list of RGB arrays -> one ``sv.Detections`` per array (their own pixels); ``overlap``: the share of a
    tile that its neighbour covers too; ``merge``: ``"nms"`` or ``"nmm"``, by class, at IoU ``iou``;
    ``full_image``: also run the whole image (finds objects larger than a tile).
    """
    sv = require("supervision", "分块推理")
    tile, overlap = check_tiling(tile, overlap, merge, iou)
    step = int(round(tile * overlap))
    slicer = sv.InferenceSlicer(
        callback=run,
        slice_wh=tile,
        overlap_wh=step,
        overlap_filter=sv.OverlapFilter.NONE,  # merged once below, together with the whole-image detections
        batch_size=max(1, int(batch_size)),
    )
    parts = [slicer(image)]
    if full_image:
        parts.append(run([image])[0])
    merged = sv.Detections.merge(parts)
    if len(merged) == 0:
        return merged
    if merge == "nmm":
        merged = merged.with_nmm(threshold=iou, class_agnostic=False)
    else:
        merged = merged.with_nms(threshold=iou, class_agnostic=False)
    order = np.argsort(-merged.confidence, kind="stable")
    return merged[order]
