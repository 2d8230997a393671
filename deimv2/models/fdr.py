"""Fine-grained Distribution Refinement (FDR) math from D-FINE.

Each box edge is predicted as a distribution over ``reg_max + 1`` bins. Bin ``n`` stands for the
offset ``W(n)`` (the non-uniform weighting function); the edge offset is ``sum_n softmax(p)_n * W(n)``.
Offsets are measured in units of ``ref_wh / reg_scale`` from the half-size box of the reference.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from deimv2.utils.box_ops import box_xyxy_to_cxcywh

__all__ = ["weighting_function", "translate_gt", "distance2bbox", "bbox2distance", "Integral"]


def _scalar_tensor(value, like: Tensor) -> Tensor:
    """``value`` (float or tensor) as a 1-element 1-D tensor."""
    if isinstance(value, Tensor):
        return value.reshape(-1)[:1]
    return torch.tensor([float(value)], dtype=like.dtype, device=like.device)


def weighting_function(reg_max: int, up: Tensor, reg_scale, deploy: bool = False) -> Tensor:
    """Non-uniform bin values ``W(0..reg_max)``, shape ``[reg_max + 1]``.

    With ``a = |up| * |reg_scale|`` and ``step = (a + 1) ** (2 / (reg_max - 2))``:
    ``W = [-2a, -(step^(k-1) - 1), ..., -(step - 1), 0, step - 1, ..., step^(k-1) - 1, 2a]``
    with ``k = reg_max // 2`` (so ``W(1) = -a`` and ``W(reg_max - 1) = a``). W is dense near 0 and
    sparse at both ends. ``deploy=True`` evaluates it once in Python double precision (as the official
    export path does) and returns a constant tensor.

    Explained in notebooks/08_decoder.ipynb §4.
    """
    half = reg_max // 2
    exponent = 2 / (reg_max - 2)
    bound = up.reshape(-1)[0].abs() * _scalar_tensor(reg_scale, up).abs()  # [1]
    if deploy:
        a = bound.item()
        outer = (bound * 2).item()
        step = (a + 1) ** exponent
        right = [step**i - 1 for i in range(1, half)]
        values = [-outer] + [-v for v in reversed(right)] + [0.0] + right + [outer]
        return torch.tensor(values, dtype=up.dtype, device=up.device)
    step = (bound + 1) ** exponent
    right = [step**i - 1 for i in range(1, half)]  # each [1]
    left = [-v for v in reversed(right)]
    zero = torch.zeros_like(bound)
    return torch.cat([-(bound * 2)] + left + [zero] + right + [bound * 2], 0)


def translate_gt(gt: Tensor, reg_max: int, reg_scale, up: Tensor):
    """Split continuous edge offsets into two-bin soft labels.

    For each value ``g`` (``gt`` is flattened) find the left bin ``i`` with ``W(i) <= g < W(i+1)`` and
    linear-interpolation weights ``weight_right = (g - W(i)) / (W(i+1) - W(i))``, ``weight_left = 1 - weight_right``.
    Values below ``W(0)`` give ``(i=0, right=0, left=1)``; values ``>= W(reg_max)`` give
    ``(i=reg_max-0.1, right=1, left=0)``. Returns ``(indices float, weight_right, weight_left)``, each ``[N]``.

    Explained in notebooks/09_loss.ipynb §4.
    """
    gt = gt.reshape(-1)
    values = weighting_function(reg_max, up, reg_scale)
    left_idx = (values.unsqueeze(0) - gt.unsqueeze(1) <= 0).sum(1) - 1  # -1 .. reg_max
    below = left_idx < 0
    above = left_idx >= reg_max
    safe = left_idx.clamp(0, reg_max - 1)
    dist_left = (gt - values[safe]).abs()
    dist_right = (values[safe + 1] - gt).abs()
    w_right = dist_left / (dist_left + dist_right)
    w_left = 1.0 - w_right
    zeros, ones = torch.zeros_like(w_right), torch.ones_like(w_right)
    w_right = torch.where(below, zeros, torch.where(above, ones, w_right))
    w_left = torch.where(below, ones, torch.where(above, zeros, w_left))
    indices = left_idx.to(w_right.dtype)
    indices = torch.where(below, zeros, torch.where(above, torch.full_like(indices, reg_max - 0.1), indices))
    return indices, w_right, w_left


def distance2bbox(points: Tensor, distance: Tensor, reg_scale) -> Tensor:
    """Edge offsets -> cxcywh boxes.

    ``points`` are reference boxes ``[..., 4]`` (cx, cy, w, h); ``distance`` ``[..., 4]`` holds
    (left, top, right, bottom) offsets in units of ``wh / reg_scale`` beyond the half-size box,
    e.g. ``x1 = cx - (reg_scale / 2 + d_left) * w / reg_scale``. Zero offsets give back ``points``.

    Explained in notebooks/08_decoder.ipynb §4.
    """
    reg_scale = abs(reg_scale)
    half = 0.5 * reg_scale
    unit_w = points[..., 2] / reg_scale
    unit_h = points[..., 3] / reg_scale
    x1 = points[..., 0] - (half + distance[..., 0]) * unit_w
    y1 = points[..., 1] - (half + distance[..., 1]) * unit_h
    x2 = points[..., 0] + (half + distance[..., 2]) * unit_w
    y2 = points[..., 1] + (half + distance[..., 3]) * unit_h
    return box_xyxy_to_cxcywh(torch.stack([x1, y1, x2, y2], -1))


def bbox2distance(points: Tensor, bbox: Tensor, reg_max: int, reg_scale, up: Tensor, eps: float = 0.1):
    """Inverse of :func:`distance2bbox` turned into FDR targets.

    ``points`` ``[N,4]`` cxcywh reference boxes, ``bbox`` ``[N,4]`` xyxy targets. Returns
    ``(indices [4N] clamped to [0, reg_max - eps], weight_right [4N], weight_left [4N])``, all detached.

    Explained in notebooks/09_loss.ipynb §4.
    """
    reg_scale = abs(reg_scale)
    half = 0.5 * reg_scale
    unit_w = points[..., 2] / reg_scale + 1e-16
    unit_h = points[..., 3] / reg_scale + 1e-16
    left = (points[:, 0] - bbox[:, 0]) / unit_w - half
    top = (points[:, 1] - bbox[:, 1]) / unit_h - half
    right = (bbox[:, 2] - points[:, 0]) / unit_w - half
    bottom = (bbox[:, 3] - points[:, 1]) / unit_h - half
    edges = torch.stack([left, top, right, bottom], -1)
    indices, w_right, w_left = translate_gt(edges, reg_max, reg_scale, up)
    if reg_max is not None:
        indices = indices.clamp(min=0, max=reg_max - eps)
    return indices.reshape(-1).detach(), w_right.detach(), w_left.detach()


class Integral(nn.Module):
    """Expected edge offset of each distribution: ``softmax(x) · W``.

    ``forward(x [..., 4*(reg_max+1)], project [reg_max+1]) -> [..., 4]``.

    Explained in notebooks/08_decoder.ipynb §4.
    """

    def __init__(self, reg_max: int = 32):
        super().__init__()
        self.reg_max = reg_max

    def forward(self, x: Tensor, project: Tensor) -> Tensor:
        lead = x.shape[:-1]
        prob = F.softmax(x.reshape(-1, self.reg_max + 1), dim=1)
        return F.linear(prob, project.to(prob.device)).reshape(*lead, 4)

    def extra_repr(self) -> str:
        return f"reg_max={self.reg_max}"
