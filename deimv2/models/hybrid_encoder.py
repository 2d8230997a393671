"""HybridEncoder of DEIMv2 N/S/M/L/X: AIFI self-attention on the coarsest map + CCFF (FPN + PAN) fusion.

Faithful to the official ``engine/deim/hybrid_encoder.py``: same constructor keywords, same
state_dict keys (official checkpoints load with ``strict=True``), same outputs. Differences that do
not change results: attention uses ``F.scaled_dot_product_attention``; the 2-D sin-cos position
embedding is cached per feature size (never stored in the state_dict).
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from deimv2.errors import ConfigError
from deimv2.models.layers import (
    ConvBNAct,
    ELANFuseBlockDEIM,
    ELANFuseBlockDFine,
    SCDown,
    convert_to_deploy,
    make_activation,
)

__all__ = ["HybridEncoder", "AIFILayer", "sincos_position_embedding_2d"]


def sincos_position_embedding_2d(w: int, h: int, embed_dim: int = 256, temperature: float = 10000.0) -> torch.Tensor:
    """2-D sin-cos position embedding, shape ``[1, w*h, embed_dim]`` (float32, CPU).

    Token ``p`` gets ``a = p // h`` and ``b = p % h`` (the official w-major enumeration; for the
    square maps used in practice ``a`` is the row and ``b`` the column of a row-major flatten) and
    the embedding ``[sin(a*om), cos(a*om), sin(b*om), cos(b*om)]`` with
    ``om_i = 1 / temperature**(i / (embed_dim/4))``, ``i = 0..embed_dim/4-1``.

    Explained in notebooks/07_architecture.ipynb §1.
    """
    if embed_dim % 4 != 0:
        raise ConfigError(
            f"hidden_dim={embed_dim} 必须能被 4 整除(2D sin-cos 位置编码的要求),请修改配置中的 hidden_dim。"
        )
    pos_dim = embed_dim // 4
    omega = 1.0 / (temperature ** (torch.arange(pos_dim, dtype=torch.float32) / pos_dim))
    a = torch.arange(int(w), dtype=torch.float32).repeat_interleave(int(h))
    b = torch.arange(int(h), dtype=torch.float32).repeat(int(w))
    out_a = a[:, None] * omega[None]
    out_b = b[:, None] * omega[None]
    return torch.cat([out_a.sin(), out_a.cos(), out_b.sin(), out_b.cos()], dim=1)[None]


class _SelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention`` parameter names and init.

    Queries and keys see ``x + pos``, values see ``x`` (DETR style).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ConfigError(f"hidden_dim={embed_dim} 必须能被 nhead={num_heads} 整除,请修改配置。")
        self.num_heads = num_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim))
        # Same RNG order as nn.MultiheadAttention: out_proj is built before in_proj is initialised.
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
        bsz, length, dim = x.shape
        heads, head_dim = self.num_heads, dim // self.num_heads
        qk_in = x if pos is None else x + pos
        w, bias = self.in_proj_weight, self.in_proj_bias
        qk = F.linear(qk_in, w[: 2 * dim], bias[: 2 * dim])
        v = F.linear(x, w[2 * dim :], bias[2 * dim :])
        # -> [B, heads, L, head_dim]
        q, k = qk.view(bsz, length, 2, heads, head_dim).permute(2, 0, 3, 1, 4)
        v = v.view(bsz, length, heads, head_dim).transpose(1, 2)
        # Explicit softmax(q k^T / sqrt(d)) v: the arithmetic nn.MultiheadAttention uses (need_weights=True
        # path), so the encoder matches the official one bit for bit. That keeps the decoder's top-k query
        # selection identical even where scores are nearly tied (SDPA differs by ~1e-7 and can flip it).
        attn = torch.matmul(q * math.sqrt(1.0 / head_dim), k.transpose(-2, -1)).softmax(-1)
        out = torch.matmul(F.dropout(attn, self.dropout) if self.training and self.dropout > 0 else attn, v)
        return self.out_proj(out.transpose(1, 2).reshape(bsz, length, dim))


class AIFILayer(nn.Module):
    """Post-norm transformer encoder layer (official ``TransformerEncoderLayer``, normalize_before=False).

    Explained in notebooks/07_architecture.ipynb §1.
    """

    def __init__(
        self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1, activation: str = "relu"
    ):
        super().__init__()
        self.self_attn = _SelfAttention(d_model, nhead, dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = make_activation(activation)

    def forward(self, src: torch.Tensor, pos_embed: torch.Tensor | None = None) -> torch.Tensor:
        src = self.norm1(src + self.dropout1(self.self_attn(src, pos_embed)))
        ffn = self.linear2(self.dropout(self.activation(self.linear1(src))))
        return self.norm2(src + self.dropout2(ffn))


class _AIFIStack(nn.Module):
    """``num_layers`` AIFI layers applied in sequence (official ``TransformerEncoder``, no final norm)."""

    def __init__(self, layer: AIFILayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(num_layers)])

    def forward(self, src: torch.Tensor, pos_embed: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            src = layer(src, pos_embed=pos_embed)
        return src


class HybridEncoder(nn.Module):
    """AIFI on the maps in ``use_encoder_idx``, then top-down FPN and bottom-up PAN fusion.

    Input: list of ``[B, in_channels[i], H_i, W_i]`` maps (strides ``feat_strides``, each twice the
    previous). Output: list of ``[B, hidden_dim, H_i, W_i]`` maps at the same strides.
    ``version='deim'`` uses ELANFuseBlockDEIM (RepNCSPELAN5), ``'dfine'`` ELANFuseBlockDFine (RepNCSPELAN4).
    ``csp_type`` defaults to ``'csp2'`` (the official default ``'csp'`` cannot be built for 'dfine';
    every official config sets ``csp2``).

    Explained in notebooks/07_architecture.ipynb §1–§2.
    """

    def __init__(
        self,
        in_channels=(512, 1024, 2048),
        feat_strides=(8, 16, 32),
        hidden_dim: int = 256,
        nhead: int = 8,
        dim_feedforward: int = 1024,
        dropout: float = 0.0,
        enc_act: str = "gelu",
        use_encoder_idx=(2,),
        num_encoder_layers: int = 1,
        pe_temperature: float = 10000,
        expansion: float = 1.0,
        depth_mult: float = 1.0,
        act: str = "silu",
        eval_spatial_size=None,
        version: str = "dfine",
        csp_type: str = "csp2",
        fuse_op: str = "cat",
    ):
        super().__init__()
        if len(in_channels) != len(feat_strides):
            raise ConfigError(
                f"HybridEncoder: in_channels {list(in_channels)} 与 feat_strides {list(feat_strides)} "
                "的长度必须相同,请检查配置。"
            )
        if fuse_op not in ("sum", "cat"):
            raise ConfigError(f"HybridEncoder: fuse_op={fuse_op!r} 不受支持,请设置为 'sum' 或 'cat'。")
        if version not in ("deim", "dfine"):
            raise ConfigError(f"HybridEncoder: version={version!r} 不受支持,请设置为 'deim' 或 'dfine'。")
        bad_idx = [i for i in use_encoder_idx if not 0 <= i < len(in_channels)]
        if bad_idx:
            raise ConfigError(
                f"HybridEncoder: use_encoder_idx {list(use_encoder_idx)} 超出输入层数 {len(in_channels)},请检查配置。"
            )
        self.in_channels = list(in_channels)
        self.feat_strides = list(feat_strides)
        self.hidden_dim = hidden_dim
        self.use_encoder_idx = list(use_encoder_idx)
        self.num_encoder_layers = num_encoder_layers
        self.pe_temperature = pe_temperature
        self.eval_spatial_size = eval_spatial_size
        self.out_channels = [hidden_dim] * len(in_channels)
        self.out_strides = list(feat_strides)
        self.fuse_op = fuse_op
        self._pos_cache: dict = {}

        self.input_proj = nn.ModuleList(
            [
                nn.Sequential(
                    OrderedDict(
                        [
                            ("conv", nn.Conv2d(c, hidden_dim, kernel_size=1, bias=False)),
                            ("norm", nn.BatchNorm2d(hidden_dim)),
                        ]
                    )
                )
                if c != hidden_dim
                else nn.Identity()
                for c in in_channels
            ]
        )

        # Prototypes are built once and deep-copied, in the official order, so that a seeded
        # construction gives the same initial weights as the official code.
        layer = AIFILayer(hidden_dim, nhead, dim_feedforward, dropout, enc_act)
        self.encoder = nn.ModuleList(
            [_AIFIStack(copy.deepcopy(layer), num_encoder_layers) for _ in range(len(use_encoder_idx))]
        )

        c1 = hidden_dim if fuse_op == "sum" else 2 * hidden_dim
        c4 = round(expansion * hidden_dim // 2)
        n = round(3 * depth_mult)
        lateral = ConvBNAct(hidden_dim, hidden_dim, 1, 1)
        downsample = nn.Sequential(SCDown(hidden_dim, hidden_dim, 3, 2))
        if version == "dfine":
            fuse = ELANFuseBlockDFine(c1, hidden_dim, 2 * hidden_dim, c4, n, act=act, csp_type=csp_type)
        else:
            fuse = ELANFuseBlockDEIM(c1, hidden_dim, 2 * hidden_dim, c4, n, act=act)

        levels = len(in_channels)
        self.lateral_convs = nn.ModuleList([copy.deepcopy(lateral) for _ in range(levels - 1)])
        self.fpn_blocks = nn.ModuleList([copy.deepcopy(fuse) for _ in range(levels - 1)])
        self.downsample_convs = nn.ModuleList([copy.deepcopy(downsample) for _ in range(levels - 1)])
        self.pan_blocks = nn.ModuleList([copy.deepcopy(fuse) for _ in range(levels - 1)])

        if eval_spatial_size:
            h, w = eval_spatial_size
            for idx in self.use_encoder_idx:
                s = self.feat_strides[idx]
                self._position_embedding(h // s, w // s, torch.device("cpu"))

    def _position_embedding(
        self, h: int, w: int, device: torch.device, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Cached ``[1, h*w, hidden_dim]`` embedding for an ``h x w`` map (plain attribute, not a buffer)."""
        key = (h, w, device, dtype)
        pos = self._pos_cache.get(key)
        if pos is None:
            pos = sincos_position_embedding_2d(w, h, self.hidden_dim, self.pe_temperature).to(device, dtype)
            self._pos_cache[key] = pos
        return pos

    def deploy(self) -> HybridEncoder:
        """Switch to eval mode and fold every ConvBNAct / RepVGGBlock into single convs (in place)."""
        self.eval()
        return convert_to_deploy(self)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(feats) != len(self.in_channels):
            raise ConfigError(
                f"HybridEncoder 期望 {len(self.in_channels)} 个特征图(in_channels={self.in_channels}),"
                f"实际收到 {len(feats)} 个。请让 backbone 的 return_idx 与 encoder 的 in_channels 一致。"
            )
        proj = [m(f) for m, f in zip(self.input_proj, feats)]

        if self.num_encoder_layers > 0:
            for stack, idx in zip(self.encoder, self.use_encoder_idx):
                x = proj[idx]
                b, c, h, w = x.shape
                # float32 as official (also under autocast); the model's dtype for a .half()/.bfloat16() model
                amp = torch.is_autocast_enabled(x.device.type)
                pos = self._position_embedding(h, w, x.device, torch.float32 if amp else x.dtype)
                memory = stack(x.flatten(2).transpose(1, 2), pos_embed=pos)
                # contiguous(): a bare reshape would give a channels_last view, changing conv numerics
                proj[idx] = memory.transpose(1, 2).reshape(b, c, h, w).contiguous()

        cat = self.fuse_op == "cat"
        levels = len(self.in_channels)
        # top-down: inner[k] is the fused map of level k; lateral outputs replace the coarser entry
        inner = [proj[-1]]
        for k, idx in enumerate(range(levels - 1, 0, -1)):
            high = self.lateral_convs[k](inner[0])
            inner[0] = high
            up = F.interpolate(high, scale_factor=2.0, mode="nearest")
            low = proj[idx - 1]
            inner.insert(0, self.fpn_blocks[k](torch.cat([up, low], 1) if cat else up + low))

        outs = [inner[0]]
        for k in range(levels - 1):
            down = self.downsample_convs[k](outs[-1])
            high = inner[k + 1]
            outs.append(self.pan_blocks[k](torch.cat([down, high], 1) if cat else down + high))
        return outs
