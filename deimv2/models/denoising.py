"""Contrastive denoising (CDN) queries for training, as in RT-DETR / DEIM.

Every ground-truth box is copied into ``num_group`` groups. Each group holds a positive half
(box jittered by less than half its size, should be reconstructed) and a negative half
(jittered by 1-2x half its size, should be classified as background). Some labels are flipped
to a random class. The queries are prepended to the matching queries; an attention mask keeps
groups from seeing each other and keeps the matching queries from seeing any denoising query.
"""

import torch
import torch.nn as nn

from deimv2.utils.box_ops import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, inverse_sigmoid

__all__ = ["get_contrastive_denoising_training_group"]


def get_contrastive_denoising_training_group(
    targets: list[dict[str, torch.Tensor]],
    num_classes: int,
    num_queries: int,
    class_embed: nn.Module,
    num_denoising: int = 100,
    label_noise_ratio: float = 0.5,
    box_noise_scale: float = 1.0,
):
    """Build denoising queries from ``targets`` (list of dicts with ``labels`` [n] and ``boxes`` [n,4] cxcywh in [0,1]).

    Returns ``(query_embeds [B, D, C], query_boxes_unact [B, D, 4] (logit space), attn_mask [D+Q, D+Q] bool
    with True = blocked, dn_meta)`` where ``D = 2 * max_gt * num_group``, or four ``None`` when there is
    nothing to denoise. ``dn_meta = {'dn_positive_idx': tuple of per-image index tensors,
    'dn_num_group': int, 'dn_num_split': [D, num_queries]}``.
    The random draws (in this order: label-flip mask, new labels, box signs, box magnitudes) match the
    official implementation, so equal seeds give equal queries.

    Explained in notebooks/08_decoder.ipynb §2.
    """
    if num_denoising <= 0:
        return None, None, None, None
    num_gts = [len(t["labels"]) for t in targets]
    device = targets[0]["labels"].device
    max_gt = max(num_gts)
    if max_gt == 0:
        return None, None, None, None

    num_group = max(num_denoising // max_gt, 1)
    group_len = 2 * max_gt  # positives then negatives
    total = group_len * num_group
    labels, boxes, is_real = _padded(targets, max_gt, num_classes, copies=2 * num_group)
    # 1.0 for the negative half of every group, shape [1, total, 1]
    negative = ((torch.arange(total, device=device) % group_len) >= max_gt).float().reshape(1, total, 1)

    # positive query indices per image: group g, gt j -> g * group_len + j (ascending)
    offsets = torch.arange(num_group, device=device).unsqueeze(1) * group_len
    dn_positive_idx = tuple((offsets + torch.arange(n, device=device)).reshape(-1) for n in num_gts)

    if label_noise_ratio > 0:
        labels = _flip_labels(labels, is_real, num_classes, label_noise_ratio)
    if box_noise_scale > 0:
        boxes = _jitter_boxes(boxes, negative, box_noise_scale)
    query_embeds = class_embed(labels)
    attn_mask = _attention_mask(total, group_len, num_queries, device)
    dn_meta = {"dn_positive_idx": dn_positive_idx, "dn_num_group": num_group, "dn_num_split": [total, num_queries]}
    return query_embeds, inverse_sigmoid(boxes), attn_mask, dn_meta


def _padded(targets: list[dict[str, torch.Tensor]], max_gt: int, num_classes: int, copies: int):
    """``(labels [B, max_gt], boxes [B, max_gt, 4], is_real [B, max_gt])``, padding labelled ``num_classes``,
    each repeated ``copies`` times along the query axis (every group's positive and negative half)."""
    bs, device = len(targets), targets[0]["labels"].device
    labels = torch.full([bs, max_gt], num_classes, dtype=torch.int32, device=device)
    boxes = torch.zeros([bs, max_gt, 4], device=device)
    is_real = torch.zeros([bs, max_gt], dtype=torch.bool, device=device)
    for i, t in enumerate(targets):
        n = len(t["labels"])
        if n > 0:
            labels[i, :n] = t["labels"]
            boxes[i, :n] = t["boxes"]
            is_real[i, :n] = True
    return labels.repeat(1, copies), boxes.repeat(1, copies, 1), is_real.repeat(1, copies)


def _flip_labels(labels: torch.Tensor, is_real: torch.Tensor, num_classes: int, ratio: float) -> torch.Tensor:
    """A share ``ratio / 2`` of the real labels replaced by random classes (draws: flip mask, then new labels)."""
    flip = torch.rand(labels.shape, device=labels.device) < (ratio * 0.5)
    new_labels = torch.randint(0, num_classes, labels.shape, dtype=labels.dtype, device=labels.device)
    return torch.where(flip & is_real, new_labels, labels)


def _jitter_boxes(boxes: torch.Tensor, negative: torch.Tensor, scale: float) -> torch.Tensor:
    """Each corner moved by up to half the box size (positives: [0, 1) of it, negatives: [1, 2)), times ``scale``,
    clipped to the image (draws: signs, then magnitudes); cxcywh in, cxcywh out."""
    xyxy = box_cxcywh_to_xyxy(boxes)
    half_wh = (boxes[..., 2:] * 0.5).repeat(1, 1, 2) * scale
    sign = torch.randint(0, 2, boxes.shape, dtype=boxes.dtype, device=boxes.device) * 2.0 - 1.0
    magnitude = torch.rand(boxes.shape, device=boxes.device)
    magnitude = (magnitude + 1.0) * negative + magnitude * (1 - negative)  # negatives: [1, 2)
    xyxy = (xyxy + sign * magnitude * half_wh).clip(min=0.0, max=1.0)
    boxes = box_xyxy_to_cxcywh(xyxy)
    return torch.where(boxes < 0, -boxes, boxes)


def _attention_mask(total: int, group_len: int, num_queries: int, device) -> torch.Tensor:
    """``[total + num_queries]²`` bool, True = blocked: the groups are blind to each other, and the matching
    queries see no denoising query."""
    size = total + num_queries
    group_id = torch.arange(total, device=device) // group_len
    attn_mask = torch.zeros([size, size], dtype=torch.bool, device=device)
    attn_mask[:total, :total] = group_id.unsqueeze(1) != group_id.unsqueeze(0)
    attn_mask[total:, :total] = True
    return attn_mask
