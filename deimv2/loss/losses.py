"""Pure loss functions of the DEIM criterion (no matching, no bookkeeping).

Conventions: ``logits`` ``[B, Q, C]``; a matching is given as ``(batch_idx, query_idx)`` of the
matched queries plus the matched ``labels`` / ``ious`` (one per matched query). ``num_boxes`` is the
normalizer (number of target boxes, averaged over processes).
"""

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor

from deimv2.utils.box_ops import box_cxcywh_to_xyxy, elementwise_generalized_box_iou

__all__ = ["mal_loss", "vfl_loss", "focal_loss", "box_losses", "fgl_loss", "ddf_loss"]


def _one_hot_positions(logits: Tensor, batch_idx: Tensor, query_idx: Tensor, labels: Tensor):
    """Index tuple of the (image, query, class) entries that are positives."""
    return batch_idx.to(logits.device), query_idx.to(logits.device), labels.to(logits.device)


def mal_loss(
    logits: Tensor,
    batch_idx: Tensor,
    query_idx: Tensor,
    labels: Tensor,
    ious: Tensor,
    num_boxes: float,
    gamma: float,
    mal_alpha: float | None = None,
) -> Tensor:
    """Matchability-Aware Loss (DEIM).

    Per class entry with logit ``x`` and ``p = sigmoid(x)`` (detached in the weight):
    positives (matched query, its class) use target ``t = IoU ** gamma`` and weight 1; all other entries
    use target 0 and weight ``p ** gamma`` (times ``mal_alpha`` when given).
    Loss = ``sum(weight * BCE(x, t)) / num_boxes``.

    Explained in notebooks/09_loss.ipynb §3.
    """
    pos = _one_hot_positions(logits, batch_idx, query_idx, labels)
    target = torch.zeros_like(logits)
    target[pos] = ious.detach().to(logits.dtype).pow(gamma)
    weight = logits.detach().sigmoid().pow(gamma)
    if mal_alpha is not None:
        weight = weight * mal_alpha
    weight[pos] = 1.0
    return F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum") / num_boxes


def vfl_loss(
    logits: Tensor,
    batch_idx: Tensor,
    query_idx: Tensor,
    labels: Tensor,
    ious: Tensor,
    num_boxes: float,
    alpha: float,
    gamma: float,
) -> Tensor:
    """Varifocal loss: positives use target = weight = IoU; negatives target 0, weight ``alpha * p ** gamma``.

    Explained in notebooks/09_loss.ipynb §3.
    """
    pos = _one_hot_positions(logits, batch_idx, query_idx, labels)
    target = torch.zeros_like(logits)
    target[pos] = ious.detach().to(logits.dtype)
    weight = alpha * logits.detach().sigmoid().pow(gamma)
    weight[pos] = target[pos]
    return F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum") / num_boxes


def focal_loss(
    logits: Tensor, batch_idx: Tensor, query_idx: Tensor, labels: Tensor, num_boxes: float, alpha: float, gamma: float
) -> Tensor:
    """Sigmoid focal loss against one-hot class targets, ``sum / num_boxes``.

    Explained in notebooks/09_loss.ipynb §3.
    """
    pos = _one_hot_positions(logits, batch_idx, query_idx, labels)
    target = torch.zeros_like(logits)
    target[pos] = 1.0
    loss = torchvision.ops.sigmoid_focal_loss(logits, target, alpha, gamma, reduction="sum")
    return loss / num_boxes


def box_losses(
    src_boxes: Tensor, tgt_boxes: Tensor, num_boxes: float, boxes_weight: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """``(L1, GIoU)`` losses of matched cxcywh boxes ``[N, 4]``.

    L1 = ``sum |src - tgt| / num_boxes``; GIoU = ``sum (1 - GIoU(src, tgt)) * boxes_weight / num_boxes``.

    Explained in notebooks/09_loss.ipynb §5.
    """
    l1 = F.l1_loss(src_boxes, tgt_boxes, reduction="sum") / num_boxes
    giou = 1 - elementwise_generalized_box_iou(box_cxcywh_to_xyxy(src_boxes), box_cxcywh_to_xyxy(tgt_boxes))
    if boxes_weight is not None:
        giou = giou * boxes_weight
    return l1, giou.sum() / num_boxes


def fgl_loss(
    pred_corners: Tensor,
    target_bins: Tensor,
    weight_right: Tensor,
    weight_left: Tensor,
    weight: Tensor | None,
    num_boxes: float,
) -> Tensor:
    """Fine-Grained Localization loss (unimodal distribution focal loss).

    ``pred_corners`` ``[M, reg_max + 1]`` edge-distribution logits; ``target_bins`` ``[M]`` continuous
    bin positions (left bin = ``floor``). Per edge:
    ``-(weight_left * log_softmax[left] + weight_right * log_softmax[left + 1]) * weight``,
    summed and divided by ``num_boxes``.

    Explained in notebooks/09_loss.ipynb §4.
    """
    left = target_bins.long()
    log_prob = F.log_softmax(pred_corners, dim=-1)
    pair = log_prob.gather(1, torch.stack([left, left + 1], 1))  # [M, 2]
    loss = -(pair[:, 0] * weight_left.reshape(-1) + pair[:, 1] * weight_right.reshape(-1))
    if weight is not None:
        loss = loss * weight.float()
    return loss.sum() / num_boxes


def ddf_loss(
    pred_corners: Tensor,
    teacher_corners: Tensor,
    weight: Tensor,
    pos_mask: Tensor,
    num_pos: Tensor,
    num_neg: Tensor,
    T: float = 5.0,
) -> Tensor:
    """Decoupled Distillation Focal loss: self-distillation from the last decoder layer.

    Per edge ``e`` (rows of ``[M, reg_max + 1]``):
    ``l_e = weight_e * T^2 * KL(softmax(teacher_e / T) || softmax(pred_e / T))`` (teacher detached).
    The result balances the mean over positive edges (``pos_mask``) and over the others:
    ``(mean_pos * num_pos + mean_neg * num_neg) / (num_pos + num_neg)``; an empty group contributes 0.

    Explained in notebooks/09_loss.ipynb §4.
    """
    log_p = F.log_softmax(pred_corners / T, dim=1)
    log_t = F.log_softmax(teacher_corners.detach() / T, dim=1)
    loss = weight * (T**2) * F.kl_div(log_p, log_t, reduction="none", log_target=True).sum(-1)
    loss_pos = loss[pos_mask].mean() if pos_mask.any() else 0
    loss_neg = loss[~pos_mask].mean() if (~pos_mask).any() else 0
    return (loss_pos * num_pos + loss_neg * num_neg) / (num_pos + num_neg)
