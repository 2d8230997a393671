"""DEIMv2 decoder (``DEIMTransformer``): query selection from the encoder memory, denoising queries,
a stack of deformable decoder layers with FDR box refinement, and the output dicts used by the loss.

Constructor keyword names and defaults are the official ones (YAML section ``DEIMTransformer``).
"""

import copy
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.init as init
from torch import Tensor

from deimv2.config.sections import DEIMTransformerConfig
from deimv2.errors import ConfigError
from deimv2.models.decoder_layers import LQE, MLP, TransformerDecoderLayer, prob_bias
from deimv2.models.denoising import get_contrastive_denoising_training_group
from deimv2.models.fdr import Integral, distance2bbox, weighting_function
from deimv2.utils.box_ops import inverse_sigmoid

__all__ = ["DEIMTransformer", "TransformerDecoder", "feature_shapes", "make_anchors"]


def feature_shapes(eval_size: Sequence[int], strides: Sequence[int]) -> list[list[int]]:
    """``[h, w]`` of each feature level for an input of ``eval_size`` (h, w) and per-level ``strides``.

    Explained in notebooks/08_decoder.ipynb §1.
    """
    eval_h, eval_w = eval_size
    return [[int(eval_h / s), int(eval_w / s)] for s in strides]


def make_anchors(
    spatial_shapes, grid_size: float = 0.05, eps: float = 1e-2, dtype=torch.float32, device="cpu"
) -> tuple[Tensor, Tensor]:
    """Logit-space anchors ``[1, N, 4]`` (cell centres, wh = grid_size * 2^level; inf where invalid) and the
    validity mask ``[1, N, 1]`` (all coordinates inside (eps, 1 - eps)) for feature maps of ``spatial_shapes``.

    These are the ``decoder.anchors`` / ``decoder.valid_mask`` buffers. Explained in notebooks/08_decoder.ipynb §1.
    """
    per_level = []
    for lvl, (h, w) in enumerate(spatial_shapes):
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        centers = (torch.stack([xs, ys], dim=-1).unsqueeze(0) + 0.5) / torch.tensor([w, h], dtype=dtype)
        wh = torch.ones_like(centers) * grid_size * (2.0**lvl)
        per_level.append(torch.cat([centers, wh], dim=-1).reshape(-1, h * w, 4))
    anchors = torch.cat(per_level, dim=1).to(device)
    valid_mask = ((anchors > eps) * (anchors < 1 - eps)).all(-1, keepdim=True)
    anchors = torch.where(valid_mask, torch.log(anchors / (1 - anchors)), torch.inf)
    return anchors, valid_mask


class TransformerDecoder(nn.Module):
    """The layer stack with Fine-grained Distribution Refinement.

    Layer 0 predicts an initial box (``pre_bbox_head``); every layer then predicts edge distributions that
    are added to the previous layer's (``pred_corners``) and decoded around that initial box.
    ``up`` / ``reg_scale`` are the parent's parameters (shared, hence both ``decoder.up`` and
    ``decoder.decoder.up`` appear in the state_dict).

    Explained in notebooks/08_decoder.ipynb §3–§5.
    """

    def __init__(
        self,
        layers: list[nn.Module],
        num_head: int,
        reg_max: int,
        reg_scale: nn.Parameter,
        up: nn.Parameter,
        eval_idx: int,
        lqe_act,
    ):
        super().__init__()
        num_layers = len(layers)
        self.num_layers = num_layers
        self.num_head = num_head
        self.eval_idx = eval_idx if eval_idx >= 0 else num_layers + eval_idx
        self.up, self.reg_scale, self.reg_max = up, reg_scale, reg_max
        self.layers = nn.ModuleList(layers)
        self.lqe_layers = nn.ModuleList([LQE(4, 64, 2, reg_max, act=lqe_act) for _ in range(num_layers)])
        self._project_cache: tuple[tuple, Tensor] | None = None
        self.deployed = False

    def project(self) -> Tensor:
        """Weighting function W(n); cached while ``up`` / ``reg_scale`` are unchanged and need no grad."""
        if self.deployed:
            return self.deploy_project
        up, scale = self.up, self.reg_scale
        if up.requires_grad or scale.requires_grad:
            return weighting_function(self.reg_max, up, scale)
        # inference-mode tensors must not leak into autograd, hence the mode is part of the key
        key = (
            up._version,
            scale._version,
            up.data_ptr(),
            scale.data_ptr(),
            up.device,
            up.dtype,
            torch.is_inference_mode_enabled(),
        )
        if self._project_cache is None or self._project_cache[0] != key:
            self._project_cache = (key, weighting_function(self.reg_max, up, scale))
        return self._project_cache[1]

    def value_op(self, memory: Tensor, spatial_shapes) -> list[Tensor]:
        """Memory ``[B, N, C]`` -> per level ``[B*heads, C/heads, h, w]`` (contiguous, built once per forward)."""
        bs, _, dim = memory.shape
        per_head = memory.reshape(bs, -1, self.num_head, dim // self.num_head).permute(0, 2, 3, 1)
        sizes = [h * w for h, w in spatial_shapes]
        return [
            v.reshape(bs * self.num_head, dim // self.num_head, h, w)
            for v, (h, w) in zip(per_head.split(sizes, dim=-1), spatial_shapes)
        ]

    def deploy(self) -> None:
        """Keep only what the eval_idx layer needs (official ``convert_to_deploy``)."""
        w = weighting_function(self.reg_max, self.up, self.reg_scale, deploy=True)
        self.register_buffer("deploy_project", w, persistent=False)
        self.layers = self.layers[: self.eval_idx + 1]
        self.lqe_layers = nn.ModuleList([nn.Identity()] * self.eval_idx + [self.lqe_layers[self.eval_idx]])
        self.deployed = True

    def forward(
        self,
        target: Tensor,
        ref_points_unact: Tensor,
        memory: Tensor,
        spatial_shapes,
        bbox_head: nn.ModuleList,
        score_head: nn.ModuleList,
        query_pos_head: nn.Module,
        pre_bbox_head: nn.Module,
        integral: nn.Module,
        attn_mask: Tensor | None = None,
    ):
        """Returns per-layer lists ``(boxes, logits, corners, refs)`` (every layer in training, only eval_idx
        otherwise) and ``(pre_boxes, pre_logits)`` of layer 0 (``pre_logits`` is None in eval mode)."""
        output = target
        output_detach = corners_prev = 0
        values = self.value_op(memory, spatial_shapes)
        project = self.project()
        reg_scale = self.reg_scale
        training = self.training

        boxes_out, logits_out, corners_out, refs_out = [], [], [], []
        ref_points = torch.sigmoid(ref_points_unact)
        query_pos = query_pos_head(ref_points).clamp(min=-10, max=10)
        pre_logits = None
        for i, layer in enumerate(self.layers):
            output = layer(output, ref_points.unsqueeze(2), values, spatial_shapes, attn_mask, query_pos)

            if i == 0:
                pre_boxes = torch.sigmoid(pre_bbox_head(output) + inverse_sigmoid(ref_points))
                if training:
                    pre_logits = score_head[0](output)
                ref_initial = pre_boxes.detach()

            corners = bbox_head[i](output + output_detach) + corners_prev
            boxes = distance2bbox(ref_initial, integral(corners, project), reg_scale)

            if training or i == self.eval_idx:
                logits = self.lqe_layers[i](score_head[i](output), corners)
                boxes_out.append(boxes)
                logits_out.append(logits)
                corners_out.append(corners)
                refs_out.append(ref_initial)
                if not training:
                    break

            corners_prev = corners
            ref_points = boxes.detach()
            output_detach = output.detach()

        return boxes_out, logits_out, corners_out, refs_out, pre_boxes, pre_logits


#: the official default of every argument below; their one home is the typed config section
_DEFAULTS = DEIMTransformerConfig()


class DEIMTransformer(nn.Module):
    """DEIMv2 decoder. ``forward(feats, targets=None)``: ``feats`` is the list of encoder maps ``[B, C_l, H_l, W_l]``.

    Eval mode returns ``{'pred_logits' [B,Q,num_classes], 'pred_boxes' [B,Q,4] (cxcywh in [0,1])}`` of
    the eval_idx layer. Train mode adds ``pred_corners, ref_points, up, reg_scale`` and (with aux_loss)
    ``aux_outputs, enc_aux_outputs, pre_outputs, enc_meta`` and, with denoising, ``dn_outputs,
    dn_pre_outputs, dn_meta`` (same structure as the official code).

    Every default is the official one, documented field by field in
    :class:`~deimv2.config.sections.DEIMTransformerConfig` (their one home; ``build_model`` passes the config's values).
    Explained in notebooks/08_decoder.ipynb §1–§2.
    """

    def __init__(
        self,
        num_classes=80,
        hidden_dim=_DEFAULTS.hidden_dim,
        num_queries=_DEFAULTS.num_queries,
        feat_channels=tuple(_DEFAULTS.feat_channels),
        feat_strides=tuple(_DEFAULTS.feat_strides),
        num_levels=_DEFAULTS.num_levels,
        num_points=_DEFAULTS.num_points,
        nhead=_DEFAULTS.nhead,
        num_layers=_DEFAULTS.num_layers,
        dim_feedforward=_DEFAULTS.dim_feedforward,
        dropout=_DEFAULTS.dropout,
        activation=_DEFAULTS.activation,
        num_denoising=_DEFAULTS.num_denoising,
        label_noise_ratio=_DEFAULTS.label_noise_ratio,
        box_noise_scale=_DEFAULTS.box_noise_scale,
        learn_query_content=_DEFAULTS.learn_query_content,
        eval_spatial_size=_DEFAULTS.eval_spatial_size,
        eval_idx=_DEFAULTS.eval_idx,
        eps=_DEFAULTS.eps,
        aux_loss=_DEFAULTS.aux_loss,
        cross_attn_method=_DEFAULTS.cross_attn_method,
        query_select_method=_DEFAULTS.query_select_method,
        reg_max=_DEFAULTS.reg_max,
        reg_scale=_DEFAULTS.reg_scale,
        layer_scale=_DEFAULTS.layer_scale,
        mlp_act=_DEFAULTS.mlp_act,
        use_gateway=_DEFAULTS.use_gateway,
        share_bbox_head=_DEFAULTS.share_bbox_head,
        share_score_head=_DEFAULTS.share_score_head,
    ):
        super().__init__()
        feat_channels, feat_strides = list(feat_channels), list(feat_strides)
        if len(feat_channels) > num_levels or len(feat_strides) != len(feat_channels):
            raise ConfigError(
                f"feat_channels {feat_channels} / feat_strides {feat_strides} 长度须相同且不超过 "
                f"num_levels={num_levels}"
            )
        if layer_scale != 1:
            raise ConfigError(
                f"DEIMTransformer.layer_scale={layer_scale} 不受支持：DEIMv2 的所有官方配置都是 1，"
                "官方代码在 layer_scale>1 时训练会因维度不匹配而报错。请在配置中设为 1。"
            )
        if query_select_method not in ("default", "one2many", "agnostic"):
            raise ConfigError(
                f"query_select_method 只能是 default / one2many / agnostic，当前为 {query_select_method!r}"
            )
        if cross_attn_method not in ("default", "discrete"):
            raise ConfigError(f"cross_attn_method 只能是 default / discrete，当前为 {cross_attn_method!r}")
        while len(feat_strides) < num_levels:
            feat_strides.append(feat_strides[-1] * 2)

        self.hidden_dim = hidden_dim
        self.nhead = nhead
        self.feat_strides = feat_strides
        self.num_levels = num_levels
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.eps = eps
        self.num_layers = num_layers
        self.eval_spatial_size = list(eval_spatial_size) if eval_spatial_size else None
        self.aux_loss = aux_loss
        self.reg_max = reg_max
        self.cross_attn_method = cross_attn_method
        self.query_select_method = query_select_method
        self.eval_idx = eval_idx if eval_idx >= 0 else num_layers + eval_idx

        self.input_proj = self._build_input_proj(feat_channels)

        self.up = nn.Parameter(torch.tensor([0.5]), requires_grad=False)
        self.reg_scale = nn.Parameter(torch.tensor([float(reg_scale)]), requires_grad=False)
        layer_args = (hidden_dim, nhead, dim_feedforward, dropout, activation, num_levels, num_points)
        layers = [
            TransformerDecoderLayer(*layer_args, cross_attn_method=cross_attn_method, use_gateway=use_gateway)
            for _ in range(num_layers)
        ]
        self.decoder = TransformerDecoder(layers, nhead, reg_max, self.reg_scale, self.up, eval_idx, lqe_act=activation)

        self.num_denoising = num_denoising
        self.label_noise_ratio = label_noise_ratio
        self.box_noise_scale = box_noise_scale
        if num_denoising > 0:
            self.denoising_class_embed = nn.Embedding(num_classes + 1, hidden_dim, padding_idx=num_classes)
            init.normal_(self.denoising_class_embed.weight[:-1])

        self.learn_query_content = learn_query_content
        if learn_query_content:
            self.tgt_embed = nn.Embedding(num_queries, hidden_dim)
        self.enc_score_head = nn.Linear(hidden_dim, 1 if query_select_method == "agnostic" else num_classes)
        self.enc_bbox_head = MLP(hidden_dim, hidden_dim, 4, 3, act=mlp_act)
        self.query_pos_head = MLP(4, hidden_dim, hidden_dim, 3, act=mlp_act)
        self.pre_bbox_head = MLP(hidden_dim, hidden_dim, 4, 3, act=mlp_act)
        self.integral = Integral(reg_max)

        # heads up to eval_idx may be one shared module (state_dict still lists every index); later ones never are
        n_main, n_rest = self.eval_idx + 1, num_layers - self.eval_idx - 1
        score = nn.Linear(hidden_dim, num_classes)
        self.dec_score_head = nn.ModuleList(
            [score if share_score_head else copy.deepcopy(score) for _ in range(n_main)]
            + [copy.deepcopy(score) for _ in range(n_rest)]
        )
        box = MLP(hidden_dim, hidden_dim, 4 * (reg_max + 1), 3, act=mlp_act)
        self.dec_bbox_head = nn.ModuleList(
            [box if share_bbox_head else copy.deepcopy(box) for _ in range(n_main)]
            + [copy.deepcopy(box) for _ in range(n_rest)]
        )

        if self.eval_spatial_size:
            anchors, valid_mask = self._generate_anchors()
            self.register_buffer("anchors", anchors)
            self.register_buffer("valid_mask", valid_mask)
        self._anchor_cache: dict[tuple, tuple[Tensor, Tensor]] = {}
        self._reset_parameters(feat_channels)

    # ---------------------------------------------------------------- construction
    def _build_input_proj(self, feat_channels: list[int]) -> nn.ModuleList:
        """1x1 conv+BN per input level (Identity when channels already equal hidden_dim), then 3x3 stride-2
        conv+BN for extra levels."""
        proj = nn.ModuleList()
        for ch in feat_channels:
            if ch == self.hidden_dim:
                proj.append(nn.Identity())
            else:
                proj.append(
                    nn.Sequential(
                        OrderedDict(
                            [
                                ("conv", nn.Conv2d(ch, self.hidden_dim, 1, bias=False)),
                                ("norm", nn.BatchNorm2d(self.hidden_dim)),
                            ]
                        )
                    )
                )
        ch = feat_channels[-1]
        for _ in range(self.num_levels - len(feat_channels)):
            if ch == self.hidden_dim:
                proj.append(nn.Identity())
            else:
                proj.append(
                    nn.Sequential(
                        OrderedDict(
                            [
                                ("conv", nn.Conv2d(ch, self.hidden_dim, 3, 2, padding=1, bias=False)),
                                ("norm", nn.BatchNorm2d(self.hidden_dim)),
                            ]
                        )
                    )
                )
                ch = self.hidden_dim
        return proj

    def _reset_parameters(self, feat_channels: list[int]) -> None:
        bias = prob_bias(0.01)
        init.constant_(self.enc_score_head.bias, bias)
        for mlp in (self.enc_bbox_head, self.pre_bbox_head):
            init.constant_(mlp.layers[-1].weight, 0)
            init.constant_(mlp.layers[-1].bias, 0)
        for cls_head, box_head in zip(self.dec_score_head, self.dec_bbox_head):
            init.constant_(cls_head.bias, bias)
            init.constant_(box_head.layers[-1].weight, 0)
            init.constant_(box_head.layers[-1].bias, 0)
        if self.learn_query_content:
            init.xavier_uniform_(self.tgt_embed.weight)
        for layer in self.query_pos_head.layers:
            init.xavier_uniform_(layer.weight)
        for m, ch in zip(self.input_proj, feat_channels):
            if ch != self.hidden_dim:
                init.xavier_uniform_(m[0].weight)

    # ---------------------------------------------------------------- anchors / query selection
    def _generate_anchors(
        self, spatial_shapes=None, grid_size: float = 0.05, dtype=torch.float32, device="cpu"
    ) -> tuple[Tensor, Tensor]:
        """:func:`make_anchors` for ``spatial_shapes`` (default: the feature sizes of ``eval_spatial_size``)."""
        if spatial_shapes is None:
            spatial_shapes = feature_shapes(self.eval_spatial_size, self.feat_strides)
        return make_anchors(spatial_shapes, grid_size, self.eps, dtype, device)

    def _anchors_for(self, spatial_shapes, memory: Tensor) -> tuple[Tensor, Tensor]:
        if (
            not self.training
            and self.eval_spatial_size
            and self.anchors.shape[1] == sum(h * w for h, w in spatial_shapes)
        ):
            return self.anchors, self.valid_mask
        key = (tuple(map(tuple, spatial_shapes)), memory.device, torch.is_inference_mode_enabled())
        if key not in self._anchor_cache:
            if len(self._anchor_cache) > 16:
                self._anchor_cache.clear()
            self._anchor_cache[key] = self._generate_anchors(spatial_shapes, device=memory.device)
        return self._anchor_cache[key]

    def _get_encoder_input(self, feats: Sequence[Tensor]):
        proj = [self.input_proj[i](f) for i, f in enumerate(feats)]
        for i in range(len(proj), self.num_levels):
            proj.append(self.input_proj[i](feats[-1] if i == len(feats) else proj[-1]))
        spatial_shapes = [[f.shape[2], f.shape[3]] for f in proj]
        memory = torch.cat([f.flatten(2).transpose(1, 2) for f in proj], dim=1)
        return memory, spatial_shapes

    def _select_topk(self, memory: Tensor, logits: Tensor, anchors: Tensor, topk: int):
        if self.query_select_method == "default":
            topk_ind = torch.topk(logits.max(-1).values, topk, dim=-1).indices
        elif self.query_select_method == "one2many":
            topk_ind = torch.topk(logits.flatten(1), topk, dim=-1).indices // self.num_classes
        else:  # agnostic
            topk_ind = torch.topk(logits.squeeze(-1), topk, dim=-1).indices
        idx = topk_ind.unsqueeze(-1)
        topk_anchors = anchors.gather(1, idx.expand(-1, -1, anchors.shape[-1]))
        topk_logits = logits.gather(1, idx.expand(-1, -1, logits.shape[-1])) if self.training else None
        topk_memory = memory.gather(1, idx.expand(-1, -1, memory.shape[-1]))
        return topk_memory, topk_logits, topk_anchors

    def _get_decoder_input(self, memory: Tensor, spatial_shapes, dn_embeds=None, dn_boxes_unact=None):
        anchors, valid_mask = self._anchors_for(spatial_shapes, memory)
        bs = memory.shape[0]
        anchors = anchors.expand(bs, -1, -1)
        memory = valid_mask.to(memory.dtype) * memory
        enc_logits = self.enc_score_head(memory)
        topk_memory, topk_logits, topk_anchors = self._select_topk(memory, enc_logits, anchors, self.num_queries)
        boxes_unact = self.enc_bbox_head(topk_memory) + topk_anchors

        enc_boxes_list, enc_logits_list = [], []
        if self.training:
            enc_boxes_list.append(torch.sigmoid(boxes_unact))
            enc_logits_list.append(topk_logits)
        if self.learn_query_content:
            content = self.tgt_embed.weight.unsqueeze(0).expand(bs, -1, -1)
        else:
            content = topk_memory.detach()
        boxes_unact = boxes_unact.detach()
        if dn_boxes_unact is not None:
            boxes_unact = torch.cat([dn_boxes_unact, boxes_unact], dim=1)
            content = torch.cat([dn_embeds, content], dim=1)
        return content, boxes_unact, enc_boxes_list, enc_logits_list

    # ---------------------------------------------------------------- forward
    def forward(self, feats: Sequence[Tensor], targets: list[dict[str, Tensor]] | None = None):
        memory, spatial_shapes = self._get_encoder_input(feats)

        dn_embeds = dn_boxes_unact = attn_mask = dn_meta = None
        if self.training and self.num_denoising > 0 and targets is not None:
            dn_embeds, dn_boxes_unact, attn_mask, dn_meta = get_contrastive_denoising_training_group(
                targets,
                self.num_classes,
                self.num_queries,
                self.denoising_class_embed,
                num_denoising=self.num_denoising,
                label_noise_ratio=self.label_noise_ratio,
                box_noise_scale=self.box_noise_scale,
            )

        content, ref_unact, enc_boxes, enc_logits = self._get_decoder_input(
            memory, spatial_shapes, dn_embeds, dn_boxes_unact
        )
        boxes, logits, corners, refs, pre_boxes, pre_logits = self.decoder(
            content,
            ref_unact,
            memory,
            spatial_shapes,
            self.dec_bbox_head,
            self.dec_score_head,
            self.query_pos_head,
            self.pre_bbox_head,
            self.integral,
            attn_mask=attn_mask,
        )

        if not self.training:
            return {"pred_logits": logits[-1], "pred_boxes": boxes[-1]}
        return self._training_outputs(
            logits, boxes, corners, refs, pre_logits, pre_boxes, enc_logits, enc_boxes, dn_meta
        )

    def _training_outputs(self, logits, boxes, corners, refs, pre_logits, pre_boxes, enc_logits, enc_boxes, dn_meta):
        """What the loss reads: the last layer's outputs and, with ``aux_loss``, every earlier layer's, the encoder's
        proposals and the pre-decoder boxes; the denoising queries are split off into the ``dn_*`` outputs."""
        if dn_meta is not None:
            split = dn_meta["dn_num_split"]
            dn_pre_logits, pre_logits = torch.split(pre_logits, split, dim=1)
            dn_pre_boxes, pre_boxes = torch.split(pre_boxes, split, dim=1)
            dn_logits, logits = zip(*[torch.split(t, split, dim=1) for t in logits])
            dn_boxes, boxes = zip(*[torch.split(t, split, dim=1) for t in boxes])
            dn_corners, corners = zip(*[torch.split(t, split, dim=1) for t in corners])
            dn_refs, refs = zip(*[torch.split(t, split, dim=1) for t in refs])

        out = {
            "pred_logits": logits[-1],
            "pred_boxes": boxes[-1],
            "pred_corners": corners[-1],
            "ref_points": refs[-1],
            "up": self.up,
            "reg_scale": self.reg_scale,
        }
        if self.aux_loss:
            out["aux_outputs"] = self._layer_outputs(
                logits[:-1], boxes[:-1], corners[:-1], refs[:-1], corners[-1], logits[-1]
            )
            out["enc_aux_outputs"] = [{"pred_logits": a, "pred_boxes": b} for a, b in zip(enc_logits, enc_boxes)]
            out["pre_outputs"] = {"pred_logits": pre_logits, "pred_boxes": pre_boxes}
            out["enc_meta"] = {"class_agnostic": self.query_select_method == "agnostic"}
            if dn_meta is not None:
                out["dn_outputs"] = self._layer_outputs(
                    dn_logits, dn_boxes, dn_corners, dn_refs, dn_corners[-1], dn_logits[-1]
                )
                out["dn_pre_outputs"] = {"pred_logits": dn_pre_logits, "pred_boxes": dn_pre_boxes}
                out["dn_meta"] = dn_meta
        return out

    @staticmethod
    def _layer_outputs(logits, boxes, corners, refs, teacher_corners, teacher_logits) -> list[dict]:
        """Per-layer output dicts; the last layer rides along as the GO-LSD teacher (DDF loss)."""
        return [
            {
                "pred_logits": a,
                "pred_boxes": b,
                "pred_corners": c,
                "ref_points": d,
                "teacher_corners": teacher_corners,
                "teacher_logits": teacher_logits,
            }
            for a, b, c, d in zip(logits, boxes, corners, refs)
        ]

    # ---------------------------------------------------------------- deploy
    def deploy(self) -> "DEIMTransformer":
        """Drop heads that eval never uses (official ``convert_to_deploy`` of decoder and inner decoder).

        Score heads / LQE before eval_idx become Identity, bbox heads after it Identity, layers after it are
        removed, and W(n) is frozen. Eval outputs stay the same. Returns self in eval mode.
        """
        self.eval()
        e = self.eval_idx
        self.dec_score_head = nn.ModuleList([nn.Identity()] * e + [self.dec_score_head[e]])
        self.dec_bbox_head = nn.ModuleList([h if i <= e else nn.Identity() for i, h in enumerate(self.dec_bbox_head)])
        self.decoder.deploy()
        return self

    def convert_to_deploy(self) -> "DEIMTransformer":
        """Alias of :meth:`deploy` (official name, found by module walkers)."""
        return self.deploy()
