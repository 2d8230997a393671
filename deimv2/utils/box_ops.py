"""Box format conversion and IoU helpers (boxes are ``[..., 4]`` tensors).

``xyxy`` = (x1, y1, x2, y2); ``cxcywh`` = (center x, center y, width, height).
"""

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "box_cxcywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "box_area",
    "box_iou",
    "generalized_box_iou",
    "elementwise_box_iou",
    "elementwise_generalized_box_iou",
    "inverse_sigmoid",
    "box_iou_np",
]


def box_cxcywh_to_xyxy(x: Tensor) -> Tensor:
    """cxcywh -> xyxy. Negative widths/heights are treated as 0."""
    cx, cy, w, h = x.unbind(-1)
    half_w = 0.5 * w.clamp(min=0.0)
    half_h = 0.5 * h.clamp(min=0.0)
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)


def box_xyxy_to_cxcywh(x: Tensor) -> Tensor:
    """xyxy -> cxcywh."""
    x1, y1, x2, y2 = x.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """Area of xyxy boxes, shape ``[...]``."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _check_xyxy(boxes: Tensor) -> None:
    if not bool((boxes[..., 2:] >= boxes[..., :2]).all()):
        raise ValueError(
            "GIoU 需要合法的 xyxy 框 (x2>=x1, y2>=y1)；出现退化框通常说明预测出现了 NaN/Inf，请检查学习率或输入数据。"
        )


def box_iou(boxes1: Tensor, boxes2: Tensor):
    """Pairwise IoU of xyxy boxes ``[N,4]`` x ``[M,4]``. Returns ``(iou [N,M], union [N,M])``."""
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    top_left = torch.max(boxes1[:, None, :2], boxes2[:, :2])
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2 - inter
    return inter / union, union


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalized IoU (https://giou.stanford.edu/) of xyxy boxes, shape ``[N, M]``."""
    _check_xyxy(boxes1)
    _check_xyxy(boxes2)
    iou, union = box_iou(boxes1, boxes2)
    top_left = torch.min(boxes1[:, None, :2], boxes2[:, :2])
    bottom_right = torch.max(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    hull = wh[..., 0] * wh[..., 1]
    return iou - (hull - union) / hull


def elementwise_box_iou(boxes1: Tensor, boxes2: Tensor):
    """IoU of matching pairs ``boxes1[i]``/``boxes2[i]`` (both ``[N,4]`` xyxy). Returns ``(iou [N], union [N])``."""
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    top_left = torch.max(boxes1[:, :2], boxes2[:, :2])
    bottom_right = torch.min(boxes1[:, 2:], boxes2[:, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = area1 + area2 - inter
    return inter / union, union


def elementwise_generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Generalized IoU of matching pairs (both ``[N,4]`` xyxy), shape ``[N]``."""
    _check_xyxy(boxes1)
    _check_xyxy(boxes2)
    iou, union = elementwise_box_iou(boxes1, boxes2)
    top_left = torch.min(boxes1[:, :2], boxes2[:, :2])
    bottom_right = torch.max(boxes1[:, 2:], boxes2[:, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    hull = wh[:, 0] * wh[:, 1]
    return iou - (hull - union) / hull


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """logit(x) with x clipped to [0, 1] and both x and 1-x clipped below by ``eps``."""
    x = x.clip(min=0.0, max=1.0)
    return torch.log(x.clip(min=eps) / (1 - x).clip(min=eps))


def box_iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """NumPy version of :func:`box_iou` (used by evaluation): IoU matrix between xyxy boxes ``a`` (N,4) and ``b`` (M,4)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
