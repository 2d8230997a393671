"""DEIMCriterion: matching + all DEIM loss terms over every decoder output.

Output keys (each loss multiplied by its ``weight_dict`` entry; terms missing from ``weight_dict`` are
dropped): ``loss_mal``, ``loss_bbox``, ``loss_giou``, ``loss_fgl`` for the final layer; the same names
with ``_aux_{i}`` (decoder layers ``0..L-2``, plus ``loss_ddf_aux_{i}``), ``_pre`` (first-layer plain box
head), ``_enc_{i}`` (encoder proposals), ``_dn_{i}`` and ``_dn_pre`` (denoising queries).

GO-LSD (Global Optimal Localization Self-Distillation, from D-FINE) is the ``'local'`` entry of ``losses``
together with ``use_uni_set``: FGL + DDF in :meth:`DEIMCriterion._local` (DDF distils the last layer's
edge distributions, ``teacher_corners``, into the earlier layers) and the "GO" union matching of all layers
(:func:`~deimv2.loss.matcher.union_match_indices`) for the localisation losses.
Dense O2O is not here: it is one-to-one matching (the matcher) with more targets per image (data side).
"""

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
from torch import Tensor

from deimv2.config.sections import CriterionConfig
from deimv2.errors import ConfigError
from deimv2.loss.losses import box_losses, ddf_loss, fgl_loss, focal_loss, mal_loss, vfl_loss
from deimv2.loss.matcher import HungarianMatcher, MatchIndices, union_match_indices
from deimv2.models.fdr import bbox2distance
from deimv2.utils.box_ops import box_cxcywh_to_xyxy, elementwise_box_iou, elementwise_generalized_box_iou

__all__ = ["DEIMCriterion"]

_KNOWN_LOSSES = ("mal", "vfl", "focal", "boxes", "local")  # 'local' = FGL + DDF, the losses of GO-LSD


def _reduce_num_boxes(count: int, device: torch.device) -> float:
    """``count`` averaged over processes (all-reduce only when torch.distributed is initialized), at least 1."""
    if dist.is_available() and dist.is_initialized():
        total = torch.as_tensor([float(count)], dtype=torch.float, device=device)
        dist.all_reduce(total)
        return torch.clamp(total / dist.get_world_size(), min=1).item()
    return max(float(count), 1.0)


class _Matched:
    """Targets gathered along one matching (shared by all layers that use it)."""

    def __init__(self, indices: MatchIndices, targets: Sequence[dict[str, Tensor]], device):
        self.indices = indices
        self.batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)]).to(device)
        self.query_idx = torch.cat([src for src, _ in indices]).to(device)
        self.labels = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)])
        self.boxes = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)], dim=0)
        self.boxes_xyxy = box_cxcywh_to_xyxy(self.boxes)
        self.fdr_targets = None  # cached bbox2distance result (see DEIMCriterion._local)


class DEIMCriterion(nn.Module):
    """DEIM loss. ``losses`` picks terms from ``'mal'``, ``'vfl'``, ``'focal'``, ``'boxes'``, ``'local'``.

    Defaults come from :class:`~deimv2.config.sections.CriterionConfig` (the official base YAML; the official
    constructor's own 0.2 / 2.0 are never used by an official config).
    Args follow the official YAML keys: ``alpha`` / ``gamma`` for VFL/focal/MAL (MAL uses only ``gamma``,
    plus ``mal_alpha`` when not None), ``reg_max`` FDR bins, ``boxes_weight_format`` (None, 'iou' or 'giou'),
    ``use_uni_set`` (boxes/local losses use the union "GO" matching of all layers).
    ``share_matched_indices`` is accepted for config compatibility; the official criterion ignores it too.

    Explained in notebooks/09_loss.ipynb §5 (GO-LSD: notebooks/08_decoder.ipynb §6).
    """

    def __init__(
        self,
        matcher: HungarianMatcher,
        weight_dict: dict[str, float],
        losses: list[str],
        alpha: float = CriterionConfig.alpha,
        gamma: float = CriterionConfig.gamma,
        num_classes: int = 80,
        reg_max: int = CriterionConfig.reg_max,
        boxes_weight_format: str | None = None,
        share_matched_indices: bool = False,
        mal_alpha: float | None = None,
        use_uni_set: bool = CriterionConfig.use_uni_set,
    ):
        super().__init__()
        unknown = [name for name in losses if name not in _KNOWN_LOSSES]
        if unknown:
            raise ConfigError(
                f"DEIMCriterion 的 losses 中有未知项 {unknown}；可选值为 {list(_KNOWN_LOSSES)}，请修改配置。"
            )
        if boxes_weight_format not in (None, "iou", "giou"):
            raise ConfigError(
                f"boxes_weight_format={boxes_weight_format!r} 无效；可选 None、'iou'、'giou'，请修改配置。"
            )
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.losses = list(losses)
        self.alpha = alpha
        self.gamma = gamma
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.boxes_weight_format = boxes_weight_format
        self.share_matched_indices = share_matched_indices
        self.mal_alpha = mal_alpha
        self.use_uni_set = use_uni_set

    def extra_repr(self) -> str:
        return (
            f"losses={self.losses}, num_classes={self.num_classes}, gamma={self.gamma}, alpha={self.alpha}, "
            f"reg_max={self.reg_max}, use_uni_set={self.use_uni_set}"
        )

    # ------------------------------------------------------------------ forward
    def forward(
        self, outputs: dict, targets: Sequence[dict[str, Tensor]], epoch: int = 0, **kwargs
    ) -> dict[str, Tensor]:
        """Weighted losses of all decoder outputs. ``kwargs`` (step, global_step, ...) are ignored."""
        device = outputs["pred_logits"].device
        match = lambda out, tg: self.matcher(out, tg, epoch=epoch)["indices"]  # noqa: E731
        gather = lambda ind, tg=targets: _Matched(ind, tg, device)  # noqa: E731

        aux_list = outputs.get("aux_outputs") or []
        pre = outputs.get("pre_outputs")
        enc_list = outputs.get("enc_aux_outputs") or []
        class_agnostic = bool(outputs.get("enc_meta", {}).get("class_agnostic", False))
        enc_targets = [dict(t, labels=torch.zeros_like(t["labels"])) for t in targets] if class_agnostic else targets

        main = gather(match(outputs, targets))
        aux_matched = [gather(match(out, targets)) for out in aux_list]
        pre_matched = gather(match(pre, targets)) if pre is not None else None
        enc_matched = [gather(match(out, enc_targets), enc_targets) for out in enc_list]

        num_boxes = _reduce_num_boxes(sum(len(t["labels"]) for t in targets), device)
        # GO-LSD, the "GO" part: boxes/local losses use the union of all layers' matchings (use_uni_set)
        uni, num_boxes_uni = None, num_boxes
        if self.use_uni_set and any(name in ("boxes", "local") for name in self.losses):
            layers = [m.indices for m in aux_matched]
            layers += [pre_matched.indices] if pre_matched is not None else []
            layers += [m.indices for m in enc_matched]
            uni = gather(union_match_indices(main.indices, layers))
            num_boxes_uni = _reduce_num_boxes(len(uni.query_idx), device)

        up, reg_scale = outputs.get("up"), outputs.get("reg_scale")
        state = {"num_pos": None, "num_neg": None}
        losses: dict[str, Tensor] = {}

        def add(out, own, suffix, uni_names=("boxes", "local"), n_cls=self.num_classes, nb=num_boxes, is_dn=False):
            for name in self.losses:
                use_uni = uni is not None and name in uni_names
                matched, norm = (uni, num_boxes_uni) if use_uni else (own, nb)
                terms = self._loss(name, out, matched, norm, n_cls, up, reg_scale, is_dn, state)
                losses.update({k + suffix: v * self.weight_dict[k] for k, v in terms.items() if k in self.weight_dict})

        add(outputs, main, "")
        for i, out in enumerate(aux_list):
            add(out, aux_matched[i], f"_aux_{i}")
        if pre is not None:
            add(pre, pre_matched, "_pre")
        for i, out in enumerate(enc_list):
            add(out, enc_matched[i], f"_enc_{i}", uni_names=("boxes",), n_cls=1 if class_agnostic else self.num_classes)

        if "dn_outputs" in outputs:
            dn_meta = outputs["dn_meta"]
            dn = gather(self.get_cdn_matched_indices(dn_meta, targets))
            dn_num_boxes = num_boxes * dn_meta["dn_num_group"]
            for i, out in enumerate(outputs["dn_outputs"]):
                add(out, dn, f"_dn_{i}", uni_names=(), nb=dn_num_boxes, is_dn=True)
            if outputs.get("dn_pre_outputs") is not None:
                add(outputs["dn_pre_outputs"], dn, "_dn_pre", uni_names=(), nb=dn_num_boxes, is_dn=True)

        return {k: torch.nan_to_num(v, nan=0.0) for k, v in losses.items()}

    # ------------------------------------------------------------------ single terms
    def _loss(
        self,
        name: str,
        out: dict,
        m: _Matched,
        num_boxes: float,
        num_classes: int,
        up,
        reg_scale,
        is_dn: bool,
        state: dict,
    ) -> dict[str, Tensor]:
        if name == "local":
            return self._local(out, m, num_boxes, up, reg_scale, is_dn, state)

        logits, boxes = out["pred_logits"], out["pred_boxes"]
        src_boxes = boxes[m.batch_idx, m.query_idx]
        weight = None
        if self.boxes_weight_format is not None:
            src_xyxy = box_cxcywh_to_xyxy(src_boxes.detach())
            if self.boxes_weight_format == "iou":
                weight = elementwise_box_iou(src_xyxy, m.boxes_xyxy)[0]
            else:
                weight = elementwise_generalized_box_iou(src_xyxy, m.boxes_xyxy)

        if name == "boxes":
            l1, giou = box_losses(src_boxes, m.boxes, num_boxes, weight)
            return {"loss_bbox": l1, "loss_giou": giou}

        if logits.shape[-1] != num_classes:
            raise ConfigError(
                f"模型输出 {logits.shape[-1]} 个类别，但 DEIMCriterion 的 num_classes={num_classes}；"
                "请让模型与损失函数使用相同的 num_classes。"
            )
        if name == "focal":
            return {
                "loss_focal": focal_loss(logits, m.batch_idx, m.query_idx, m.labels, num_boxes, self.alpha, self.gamma)
            }
        if weight is None:
            weight = elementwise_box_iou(box_cxcywh_to_xyxy(src_boxes.detach()), m.boxes_xyxy)[0]
        if name == "mal":
            return {
                "loss_mal": mal_loss(
                    logits, m.batch_idx, m.query_idx, m.labels, weight, num_boxes, self.gamma, self.mal_alpha
                )
            }
        return {
            "loss_vfl": vfl_loss(logits, m.batch_idx, m.query_idx, m.labels, weight, num_boxes, self.alpha, self.gamma)
        }

    def _local(
        self, out: dict, m: _Matched, num_boxes: float, up, reg_scale, is_dn: bool, state: dict
    ) -> dict[str, Tensor]:
        """GO-LSD's localisation losses: FGL on the matched queries; DDF (self-distillation from the last
        layer's distributions, ``teacher_corners``) on all queries."""
        if out.get("pred_corners") is None:
            return {}
        bins = self.reg_max + 1
        b, q = m.batch_idx, m.query_idx
        pred_corners = out["pred_corners"][b, q].reshape(-1, bins)
        if m.fdr_targets is None:  # reference points are shared by all layers of one query group
            m.fdr_targets = bbox2distance(out["ref_points"][b, q].detach(), m.boxes_xyxy, self.reg_max, reg_scale, up)
        target_bins, weight_right, weight_left = m.fdr_targets

        ious = elementwise_box_iou(box_cxcywh_to_xyxy(out["pred_boxes"][b, q]), m.boxes_xyxy)[0].detach()
        terms = {
            "loss_fgl": fgl_loss(
                pred_corners, target_bins, weight_right, weight_left, ious.repeat_interleave(4), num_boxes
            )
        }

        teacher = out.get("teacher_corners")
        if teacher is None:
            return terms
        all_corners = out["pred_corners"]
        if all_corners is teacher or torch.equal(all_corners, teacher):
            return terms
        with torch.no_grad():
            weight = out["teacher_logits"].sigmoid().max(dim=-1)[0]  # [B, Q]
            mask = torch.zeros_like(weight, dtype=torch.bool)
            mask[b, q] = True
            weight[b, q] = ious.to(weight.dtype)
            weight = weight.reshape(-1).repeat_interleave(4)
            mask = mask.reshape(-1).repeat_interleave(4)
            if not is_dn or state["num_pos"] is None:
                # denoising layers reuse the balance of the matched (non-denoising) queries
                batch_scale = 8 / all_corners.shape[0]
                state["num_pos"] = (mask.sum() * batch_scale) ** 0.5
                state["num_neg"] = ((~mask).sum() * batch_scale) ** 0.5
        terms["loss_ddf"] = ddf_loss(
            all_corners.reshape(-1, bins), teacher.reshape(-1, bins), weight, mask, state["num_pos"], state["num_neg"]
        )
        return terms

    @staticmethod
    def get_cdn_matched_indices(dn_meta: dict, targets: Sequence[dict[str, Tensor]]) -> MatchIndices:
        """Denoising matching: group ``g`` query ``dn_positive_idx[i][k]`` is tied to target ``k % num_gt``."""
        positive, num_group = dn_meta["dn_positive_idx"], dn_meta["dn_num_group"]
        indices = []
        for i, t in enumerate(targets):
            num_gt = len(t["labels"])
            device = t["labels"].device
            if num_gt == 0:
                empty = torch.zeros(0, dtype=torch.int64, device=device)
                indices.append((empty, empty))
                continue
            gt_idx = torch.arange(num_gt, dtype=torch.int64, device=device).tile(num_group)
            if len(positive[i]) != len(gt_idx):
                raise ValueError(
                    f"dn_positive_idx[{i}] 长度为 {len(positive[i])}，应为 num_gt×dn_num_group={len(gt_idx)}。"
                )
            indices.append((positive[i], gt_idx))
        return indices
