"""One-to-one Hungarian matching between queries and ground-truth boxes.

The matcher returns, for every image, ``(query_indices, target_indices)`` int64 CPU tensors of equal
length ``min(num_queries, num_targets)``, wrapped in ``{'indices': [...]}`` as in the official code.
:func:`union_match_indices` merges the matchings of several decoder layers into the "GO" set
used by DEIM's box / local losses (the "GO" of GO-LSD).

Dense O2O (DEIM) keeps this one-to-one matching unchanged: it raises the number of targets per training
image (Mosaic in ``deimv2/data/mosaic.py``, MixUp / CopyBlend in ``deimv2/data/collate.py``), so that each
image yields more positive queries. There is no separate Dense O2O loss or matcher.
"""

from collections.abc import Sequence

import torch
import torch.nn as nn
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from deimv2.config.sections import MatcherConfig
from deimv2.utils.box_ops import box_cxcywh_to_xyxy, box_iou, generalized_box_iou

__all__ = ["HungarianMatcher", "union_match_indices"]

MatchIndices = list[tuple[Tensor, Tensor]]


class HungarianMatcher(nn.Module):
    """Hungarian matcher with the DEIM cost.

    Cost of query ``q`` and target ``t`` (``p`` = probability of the target's class):

    * before ``matcher_change_epoch`` (or ``change_matcher=False``):
      ``cost_class * [alpha (1-p)^gamma (-log p) - (1-alpha) p^gamma (-log(1-p))]``
      ``+ cost_bbox * L1(box_q, box_t) + cost_giou * (-GIoU(box_q, box_t))``
      (with ``use_focal_loss=False`` the class term is ``-softmax prob``);
    * from ``matcher_change_epoch`` on (``change_matcher=True``): ``-p * IoU(box_q, box_t) ** iou_order_alpha``.

    ``weight_dict`` holds ``cost_class``, ``cost_bbox`` and ``cost_giou``.

    Explained in notebooks/09_loss.ipynb §1–§2.
    """

    def __init__(
        self,
        weight_dict: dict[str, float],
        use_focal_loss: bool = True,
        alpha: float = MatcherConfig.alpha,
        gamma: float = MatcherConfig.gamma,
        change_matcher: bool = MatcherConfig.change_matcher,
        iou_order_alpha: float = MatcherConfig.iou_order_alpha,
        matcher_change_epoch: int = MatcherConfig.matcher_change_epoch,
    ):
        super().__init__()
        self.cost_class = weight_dict["cost_class"]
        self.cost_bbox = weight_dict["cost_bbox"]
        self.cost_giou = weight_dict["cost_giou"]
        if self.cost_class == 0 and self.cost_bbox == 0 and self.cost_giou == 0:
            raise ValueError(
                "matcher 的 cost_class / cost_bbox / cost_giou 不能全为 0，请在配置中至少设置一个非零权重。"
            )
        self.use_focal_loss = use_focal_loss
        self.alpha = alpha
        self.gamma = gamma
        self.change_matcher = change_matcher
        self.iou_order_alpha = iou_order_alpha
        self.matcher_change_epoch = matcher_change_epoch

    def extra_repr(self) -> str:
        return (
            f"cost_class={self.cost_class}, cost_bbox={self.cost_bbox}, cost_giou={self.cost_giou}, "
            f"alpha={self.alpha}, gamma={self.gamma}, change_matcher={self.change_matcher}, "
            f"iou_order_alpha={self.iou_order_alpha}, matcher_change_epoch={self.matcher_change_epoch}"
        )

    def uses_iou_order(self, epoch: int) -> bool:
        """Whether the IoU-order cost is active at ``epoch``."""
        return self.change_matcher and epoch >= self.matcher_change_epoch

    @torch.no_grad()
    def cost_matrix(
        self, pred_logits: Tensor, pred_boxes: Tensor, tgt_labels: Tensor, tgt_boxes: Tensor, epoch: int = 0
    ) -> Tensor:
        """Cost ``[N, M]`` between ``N`` flattened queries and ``M`` concatenated targets."""
        if self.use_focal_loss:
            prob = pred_logits.sigmoid()
        else:
            prob = pred_logits.softmax(-1)
        prob = prob[:, tgt_labels]  # [N, M]
        pred_xyxy = box_cxcywh_to_xyxy(pred_boxes)
        tgt_xyxy = box_cxcywh_to_xyxy(tgt_boxes)

        if self.uses_iou_order(epoch):
            iou, _ = box_iou(pred_xyxy, tgt_xyxy)
            return -(prob * iou.pow(self.iou_order_alpha))

        if self.use_focal_loss:
            pos = self.alpha * (1 - prob).pow(self.gamma) * (-(prob + 1e-8).log())
            neg = (1 - self.alpha) * prob.pow(self.gamma) * (-(1 - prob + 1e-8).log())
            cost_class = pos - neg
        else:
            cost_class = -prob
        cost_bbox = torch.cdist(pred_boxes, tgt_boxes, p=1)
        cost_giou = -generalized_box_iou(pred_xyxy, tgt_xyxy)
        return self.cost_bbox * cost_bbox + self.cost_class * cost_class + self.cost_giou * cost_giou

    @torch.no_grad()
    def forward(
        self, outputs: dict[str, Tensor], targets: Sequence[dict[str, Tensor]], epoch: int = 0, **kwargs
    ) -> dict[str, MatchIndices]:
        """Match ``outputs['pred_logits'] [B,Q,C]`` / ``outputs['pred_boxes'] [B,Q,4]`` to ``targets``.

        ``targets``: list of ``{'labels': [N_i], 'boxes': [N_i, 4] cxcywh normalized}``.
        Returns ``{'indices': [(query_idx, target_idx) per image]}``.
        """
        logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
        bs, num_queries = logits.shape[:2]
        sizes = [len(t["boxes"]) for t in targets]
        empty = torch.zeros(0, dtype=torch.int64)
        if sum(sizes) == 0:
            return {"indices": [(empty, empty) for _ in sizes]}

        tgt_labels = torch.cat([t["labels"] for t in targets])
        tgt_boxes = torch.cat([t["boxes"] for t in targets])
        cost = self.cost_matrix(logits.flatten(0, 1), boxes.flatten(0, 1), tgt_labels, tgt_boxes, epoch)
        cost = torch.nan_to_num(cost.view(bs, num_queries, -1).cpu(), nan=1.0)

        indices = []
        for i, block in enumerate(cost.split(sizes, -1)):
            if sizes[i] == 0:
                indices.append((empty, empty))
                continue
            rows, cols = linear_sum_assignment(block[i].numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return {"indices": indices}


def union_match_indices(indices: MatchIndices, extra: Sequence[MatchIndices]) -> MatchIndices:
    """DEIM's "GO" set (GO-LSD): union of the matchings of all layers, one target per query.

    For every image, all ``(query, target)`` pairs of ``indices`` and of each list in ``extra`` are
    pooled; each distinct pair is counted and pairs are visited from the most to the least frequent
    (ties in the order of ``torch.argsort``, as in the official code). A query keeps the target of the
    first pair visited that contains it. Queries are returned in the visiting order.

    Explained in notebooks/08_decoder.ipynb §6, notebooks/09_loss.ipynb §5.
    """
    results = []
    for img, (rows, cols) in enumerate(indices):
        all_rows = torch.cat([rows] + [layer[img][0] for layer in extra])
        all_cols = torch.cat([cols] + [layer[img][1] for layer in extra])
        pairs = torch.stack([all_rows, all_cols], 1)
        if len(pairs) == 0:
            results.append((all_rows.long(), all_cols.long()))
            continue
        unique, counts = torch.unique(pairs, return_counts=True, dim=0)
        ordered = unique[torch.argsort(counts, descending=True)]
        q, t = ordered[:, 0], ordered[:, 1]
        # keep the first occurrence of each query in the visiting order
        position = torch.arange(len(q), device=q.device)
        first = torch.full((int(q.max()) + 1,), len(q), dtype=torch.int64, device=q.device)
        first.scatter_reduce_(0, q, position, reduce="amin")
        keep = first[q] == position
        results.append((q[keep].long(), t[keep].long()))
    return results
