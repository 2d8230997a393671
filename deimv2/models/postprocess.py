"""Turn decoder outputs into detections in pixel coordinates (no NMS, no score threshold)."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from deimv2.errors import ConfigError

__all__ = ["PostProcessor", "MSCOCO_LABEL_TO_CATEGORY", "MSCOCO_CATEGORY_TO_LABEL"]

# COCO has 80 classes but category ids run 1..90 with gaps (12, 26, 29, 30, 45, 66, 68, 69, 71, 83).
_MISSING_COCO_IDS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
#: contiguous label 0..79 -> COCO category id
MSCOCO_LABEL_TO_CATEGORY: dict[int, int] = dict(enumerate(i for i in range(1, 91) if i not in _MISSING_COCO_IDS))
#: COCO category id -> contiguous label 0..79
MSCOCO_CATEGORY_TO_LABEL: dict[int, int] = {v: k for k, v in MSCOCO_LABEL_TO_CATEGORY.items()}


def _cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    # unlike box_ops.box_cxcywh_to_xyxy, negative sizes are kept (same as torchvision.ops.box_convert)
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


class PostProcessor(nn.Module):
    """``forward(outputs, orig_target_sizes)`` with ``orig_target_sizes`` ``[B, 2]`` given as **(w, h)**.

    Focal mode: scores = sigmoid(logits); the top ``min(num_top_queries, Q * num_classes)`` (query, class)
    pairs are kept, so one query may appear with several classes. Returns a list (one per image) of
    ``{'labels' [K], 'boxes' [K, 4] xyxy pixels, 'scores' [K]}``; after :meth:`deploy` a tuple
    ``(labels [B,K], boxes [B,K,4], scores [B,K])`` (no category remap).

    Explained in notebooks/07_architecture.ipynb §1.
    """

    def __init__(
        self,
        num_classes: int = 80,
        use_focal_loss: bool = True,
        num_top_queries: int = 300,
        remap_mscoco_category: bool = False,
    ):
        super().__init__()
        self.use_focal_loss = use_focal_loss
        self.num_top_queries = num_top_queries
        self.num_classes = int(num_classes)
        self.remap_mscoco_category = remap_mscoco_category
        if remap_mscoco_category and self.num_classes > len(MSCOCO_LABEL_TO_CATEGORY):
            raise ConfigError(
                f"remap_mscoco_category=True 只适用于 COCO 的 80 类，当前 num_classes={self.num_classes}。"
                "自定义数据集请在配置中设置 remap_mscoco_category: False。"
            )
        self.deploy_mode = False

    def extra_repr(self) -> str:
        return (
            f"use_focal_loss={self.use_focal_loss}, num_classes={self.num_classes}, "
            f"num_top_queries={self.num_top_queries}"
        )

    def forward(
        self, outputs: dict[str, Tensor], orig_target_sizes: Tensor
    ) -> list[dict[str, Tensor]] | tuple[Tensor, Tensor, Tensor]:
        logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
        boxes = _cxcywh_to_xyxy(boxes) * orig_target_sizes.repeat(1, 2).unsqueeze(1)
        if self.use_focal_loss:
            num_classes = logits.shape[-1]
            scores = torch.sigmoid(logits).flatten(1)
            k = min(self.num_top_queries, scores.shape[1])
            scores, index = torch.topk(scores, k, dim=-1)
            labels = index % num_classes
            query = index // num_classes
            boxes = boxes.gather(1, query.unsqueeze(-1).expand(-1, -1, boxes.shape[-1]))
        else:  # softmax with a trailing "no object" class
            scores, labels = F.softmax(logits, dim=-1)[:, :, :-1].max(dim=-1)
            if scores.shape[1] > self.num_top_queries:
                scores, index = torch.topk(scores, self.num_top_queries, dim=-1)
                labels = labels.gather(1, index)
                boxes = boxes.gather(1, index.unsqueeze(-1).expand(-1, -1, boxes.shape[-1]))

        if self.deploy_mode:
            return labels, boxes, scores

        if self.remap_mscoco_category:
            table = torch.tensor(
                [MSCOCO_LABEL_TO_CATEGORY[i] for i in range(len(MSCOCO_LABEL_TO_CATEGORY))], device=labels.device
            )
            labels = table[labels]
        return [{"labels": lab, "boxes": box, "scores": sco} for lab, box, sco in zip(labels, boxes, scores)]

    def deploy(self) -> "PostProcessor":
        self.eval()
        self.deploy_mode = True
        return self
