"""Building blocks of the DEIMv2 decoder: norms, FFN, gateway, LQE, deformable attention, decoder layer.

Parameter names follow the official code so that official checkpoints load with ``strict=True``.
"""

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.init as init
from torch import Tensor

from deimv2.models.layers import make_activation

__all__ = [
    "RMSNorm",
    "SwiGLUFFN",
    "Gate",
    "MLP",
    "LQE",
    "MSDeformableAttention",
    "TransformerDecoderLayer",
    "deformable_sample",
    "prob_bias",
]


def prob_bias(prior_prob: float) -> float:
    """Logit of ``prior_prob`` (bias that makes ``sigmoid(bias) == prior_prob``).

    Explained in notebooks/08_decoder.ipynb §1.
    """
    return float(-math.log((1 - prior_prob) / prior_prob))


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * scale`` over the last dim, computed in float32.

    Explained in notebooks/08_decoder.ipynb §3.
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.scale

    def extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}"


class MLP(nn.Module):
    """``num_layers`` Linear layers with ``act`` between them (none after the last).

    Explained in notebooks/08_decoder.ipynb §1.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int = 3, act="relu"):
        super().__init__()
        self.num_layers = num_layers
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out))
        self.act = make_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        last = self.num_layers - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self.act(x)
        return x


class SwiGLUFFN(nn.Module):
    """SwiGLU feed-forward: ``w3(silu(a) * b)`` with ``[a, b] = w12(x)``.

    Explained in notebooks/08_decoder.ipynb §3.
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int, bias: bool = True):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.w12 = nn.Linear(in_features, 2 * hidden_features, bias=bias)
        self.w3 = nn.Linear(hidden_features, out_features, bias=bias)
        for lin in (self.w12, self.w3):
            init.xavier_uniform_(lin.weight)
            if bias:
                init.zeros_(lin.bias)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


class Gate(nn.Module):
    """Gateway: ``norm(g1 * x1 + g2 * x2)`` with ``[g1, g2] = sigmoid(Linear([x1, x2]))``.

    Initialised to ``g1 = g2 = 0.5`` (zero weight, bias logit(0.5) = 0).

    Explained in notebooks/08_decoder.ipynb §3.
    """

    def __init__(self, d_model: int, use_rmsnorm: bool = False):
        super().__init__()
        self.gate = nn.Linear(2 * d_model, 2 * d_model)
        init.constant_(self.gate.bias, prob_bias(0.5))
        init.constant_(self.gate.weight, 0)
        self.norm = RMSNorm(d_model) if use_rmsnorm else nn.LayerNorm(d_model)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        g1, g2 = torch.sigmoid(self.gate(torch.cat([x1, x2], dim=-1))).chunk(2, dim=-1)
        return self.norm(g1 * x1 + g2 * x2)


class LQE(nn.Module):
    """Location Quality Estimator: adds a score offset computed from how peaked the edge distributions are.

    Statistics per edge: the top-``k`` bin probabilities and their mean -> ``4 * (k + 1)`` features.

    Explained in notebooks/08_decoder.ipynb §5.
    """

    def __init__(self, k: int, hidden_dim: int, num_layers: int, reg_max: int, act="relu"):
        super().__init__()
        self.k = k
        self.reg_max = reg_max
        self.reg_conf = MLP(4 * (k + 1), hidden_dim, 1, num_layers, act=act)
        init.constant_(self.reg_conf.layers[-1].bias, 0)
        init.constant_(self.reg_conf.layers[-1].weight, 0)

    def forward(self, scores: Tensor, pred_corners: Tensor) -> Tensor:
        b, q, _ = pred_corners.shape
        prob = F.softmax(pred_corners.reshape(b, q, 4, self.reg_max + 1), dim=-1)
        top = prob.topk(self.k, dim=-1).values
        stat = torch.cat([top, top.mean(dim=-1, keepdim=True)], dim=-1)
        return scores + self.reg_conf(stat.reshape(b, q, -1))


def deformable_sample(
    values: Sequence[Tensor],
    spatial_shapes,
    sampling_locations: Tensor,
    attention_weights: Tensor,
    num_points_list: list[int],
    method: str = "default",
) -> Tensor:
    """Multi-scale deformable attention core (pure PyTorch).

    values: per level ``[B*H, c, h, w]``; sampling_locations ``[B, Q, H, P, 2]`` in [0, 1] (x, y);
    attention_weights ``[B, Q, H, P]`` (P = sum of points over levels). Returns ``[B, Q, H*c]``.

    Points are laid out as ``[B*H, P, Q]`` so that the weighted sum over points runs over an outer
    dimension with contiguous queries (much faster on CPU than reducing a short last dimension).

    Explained in notebooks/08_decoder.ipynb §3.
    """
    bs, num_q, num_heads, num_p, _ = sampling_locations.shape
    grids = 2 * sampling_locations - 1 if method == "default" else sampling_locations
    grids = grids.permute(0, 2, 3, 1, 4).reshape(bs * num_heads, num_p, num_q, 2).split(num_points_list, dim=1)
    weights = attention_weights.permute(0, 2, 3, 1).reshape(bs * num_heads, 1, num_p, num_q)
    weights = weights.split(num_points_list, dim=2)
    out = None
    for level, (h, w) in enumerate(spatial_shapes):
        value_l, grid_l = values[level], grids[level]
        if method == "default":
            sampled = F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False)
        else:  # 'discrete': nearest cell, no interpolation
            n_p = num_points_list[level]
            coord = (grid_l * torch.tensor([[w, h]], device=value_l.device) + 0.5).to(torch.int64)
            coord = coord.clamp(0, h - 1).reshape(value_l.shape[0], n_p * num_q, 2)
            rows = torch.arange(coord.shape[0], device=value_l.device).unsqueeze(-1).expand(-1, coord.shape[1])
            picked = value_l[rows, :, coord[..., 1], coord[..., 0]]  # [B*H, n_p*Q, c]
            sampled = picked.permute(0, 2, 1).reshape(value_l.shape[0], value_l.shape[1], n_p, num_q)
        part = (sampled * weights[level]).sum(2)  # [B*H, c, Q]
        out = part if out is None else out + part
    return out.reshape(bs, -1, num_q).permute(0, 2, 1)


class MSDeformableAttention(nn.Module):
    """Multi-scale deformable attention with a per-level number of sampling points.

    Reference points are boxes (cx, cy, w, h): offsets are scaled by ``1 / num_points`` of their level,
    the box size and ``offset_scale``. No value projection (DEIM uses the memory directly).

    Explained in notebooks/08_decoder.ipynb §3.
    """

    def __init__(
        self,
        embed_dim: int = 256,
        num_heads: int = 8,
        num_levels: int = 4,
        num_points: int | list[int] = 4,
        method: str = "default",
        offset_scale: float = 0.5,
    ):
        super().__init__()
        if isinstance(num_points, (list, tuple)):
            if len(num_points) != num_levels:
                raise ValueError(f"num_points {list(num_points)} 的长度必须等于 num_levels={num_levels}")
            num_points_list = [int(n) for n in num_points]
        else:
            num_points_list = [int(num_points)] * num_levels
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} 必须能被 num_heads={num_heads} 整除")
        self.embed_dim, self.num_heads, self.num_levels = embed_dim, num_heads, num_levels
        self.offset_scale = offset_scale
        self.num_points_list = num_points_list
        self.method = method
        self.head_dim = embed_dim // num_heads
        scale = [1.0 / n for n in num_points_list for _ in range(n)]
        self.register_buffer("num_points_scale", torch.tensor(scale, dtype=torch.float32))
        self.total_points = num_heads * sum(num_points_list)
        self.sampling_offsets = nn.Linear(embed_dim, self.total_points * 2)
        self.attention_weights = nn.Linear(embed_dim, self.total_points)
        self._reset_parameters()
        if method == "discrete":
            for p in self.sampling_offsets.parameters():
                p.requires_grad = False

    def _reset_parameters(self) -> None:
        # offsets start on rays in num_heads directions, k-th point of a level at distance k
        init.constant_(self.sampling_offsets.weight, 0)
        angles = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        dirs = torch.stack([angles.cos(), angles.sin()], -1)
        dirs = dirs / dirs.abs().max(-1, keepdim=True).values
        dist = torch.cat([torch.arange(1, n + 1) for n in self.num_points_list]).reshape(1, -1, 1)
        grid = dirs.reshape(self.num_heads, 1, 2) * dist
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        init.constant_(self.attention_weights.weight, 0)
        init.constant_(self.attention_weights.bias, 0)

    def forward(self, query: Tensor, reference_points: Tensor, values: Sequence[Tensor], spatial_shapes) -> Tensor:
        """query ``[B,Q,C]``; reference_points ``[B,Q,1,4]`` (cxcywh boxes in [0, 1]);
        values: per level ``[B*H, c, h, w]``. Returns ``[B, Q, C]``."""
        bs, num_q = query.shape[:2]
        num_p = sum(self.num_points_list)
        offsets = self.sampling_offsets(query).reshape(bs, num_q, self.num_heads, num_p, 2)
        weights = F.softmax(self.attention_weights(query).reshape(bs, num_q, self.num_heads, num_p), dim=-1)
        if reference_points.shape[-1] != 4:
            raise ValueError(f"reference_points 的最后一维必须是 4 (cx, cy, w, h)，当前为 {reference_points.shape[-1]}")
        pts_scale = self.num_points_scale.to(dtype=query.dtype).unsqueeze(-1)
        shift = offsets * pts_scale * reference_points[:, :, None, :, 2:] * self.offset_scale
        locations = reference_points[:, :, None, :, :2] + shift
        return deformable_sample(values, spatial_shapes, locations, weights, self.num_points_list, self.method)


class TransformerDecoderLayer(nn.Module):
    """Self-attention -> deformable cross-attention -> SwiGLU FFN, each followed by RMSNorm.

    With ``use_gateway`` the cross-attention residual is a learned gate (:class:`Gate`), else residual + ``norm2``.

    Explained in notebooks/08_decoder.ipynb §3.
    """

    def __init__(
        self,
        d_model: int = 256,
        n_head: int = 8,
        dim_feedforward: int = 1024,
        dropout: float = 0.0,
        activation="relu",
        n_levels: int = 4,
        n_points=4,
        cross_attn_method: str = "default",
        layer_scale: float | None = None,
        use_gateway: bool = False,
    ):
        super().__init__()
        if layer_scale is not None:
            dim_feedforward = round(layer_scale * dim_feedforward)
            d_model = round(layer_scale * d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_head, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = RMSNorm(d_model)
        self.cross_attn = MSDeformableAttention(d_model, n_head, n_levels, n_points, method=cross_attn_method)
        self.dropout2 = nn.Dropout(dropout)
        self.use_gateway = use_gateway
        if use_gateway:
            self.gateway = Gate(d_model, use_rmsnorm=True)
        else:
            self.norm2 = RMSNorm(d_model)
        self.swish_ffn = SwiGLUFFN(d_model, dim_feedforward // 2, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = RMSNorm(d_model)

    def _self_attention(self, x: Tensor, pos: Tensor | None, attn_mask: Tensor | None) -> Tensor:
        """nn.MultiheadAttention(q=k=x+pos, v=x) computed with its own weights through SDPA.

        ``attn_mask`` is boolean with True = blocked (nn.MultiheadAttention convention).
        """
        mha = self.self_attn
        d = mha.embed_dim
        heads = mha.num_heads
        w, b = mha.in_proj_weight, mha.in_proj_bias
        qk_in = x if pos is None else x + pos
        qk = F.linear(qk_in, w[: 2 * d], b[: 2 * d])
        v = F.linear(x, w[2 * d :], b[2 * d :])
        bs, n, _ = x.shape
        q, k = qk.reshape(bs, n, 2, heads, d // heads).permute(2, 0, 3, 1, 4)
        v = v.reshape(bs, n, heads, d // heads).transpose(1, 2)
        mask = None if attn_mask is None else ~attn_mask
        drop = mha.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        return mha.out_proj(out.transpose(1, 2).reshape(bs, n, d))

    def forward(
        self,
        target: Tensor,
        reference_points: Tensor,
        value,
        spatial_shapes,
        attn_mask: Tensor | None = None,
        query_pos_embed: Tensor | None = None,
    ) -> Tensor:
        target = self.norm1(target + self.dropout1(self._self_attention(target, query_pos_embed, attn_mask)))
        query = target if query_pos_embed is None else target + query_pos_embed
        cross = self.dropout2(self.cross_attn(query, reference_points, value, spatial_shapes))
        if self.use_gateway:
            target = self.gateway(target, cross)
        else:
            target = self.norm2(target + cross)
        target = target + self.dropout4(self.swish_ffn(target))
        return self.norm3(target.clamp(min=-65504, max=65504))
