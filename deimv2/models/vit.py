"""Vision Transformers used by the DINOv3-based DEIMv2 variants (S/M/L/X).

* ``ViTTiny``   - the authors' distilled ViT-Tiny / Tiny+ (S, M): cls token only, no LayerScale,
  LayerNorm eps 1e-6, RoPE on patch tokens, no final norm. Weights live under ``_model``.
* ``DINOv3ViT`` - Meta's DINOv3 ViT-S/16 and ViT-S+/16 (L, X): cls + 4 storage tokens, LayerScale,
  k-bias-masked qkv, RoPE (base 100, 'separate', train-time coordinate rescale in [1/2, 2] drawn
  per block), final LayerNorm applied to every returned layer.

State-dict keys/shapes equal the official ``engine/backbone/vit_tiny.py`` and
``engine/backbone/dinov3/`` ones. Both ``forward(x)`` return a list of patch-token tensors
``[B, H/16 * W/16, C]``, one per index in ``return_layers`` (in block order).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from deimv2.errors import ConfigError

__all__ = ["ViTTiny", "DINOv3ViT", "DINOV3_ARCHS", "VIT_TINY_ARCHS", "rope_periods"]

# name -> (embed_dim, num_heads) of the distilled ViT-Tiny family
VIT_TINY_ARCHS = {"vit_tiny": (192, 3), "vit_tinyplus": (256, 4)}
# name -> ffn type and ratio of the DINOv3 small models (both: D 384, depth 12, 6 heads, 4 storage tokens)
DINOV3_ARCHS = {"dinov3_vits16": ("mlp", 4.0), "dinov3_vits16plus": ("swiglu", 6.0)}


def rope_periods(
    head_dim: int, base: float = 100.0, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """RoPE periods ``base ** (2 k / (head_dim / 2))`` for k < head_dim / 4 (the ``rope_embed.periods`` buffer).

    Explained in notebooks/07_architecture.ipynb §3.
    """
    exps = 2 * torch.arange(head_dim // 4, device=device, dtype=dtype or torch.get_default_dtype()) / (head_dim // 2)
    return base**exps


class RopeEmbedding(nn.Module):
    """2-D axial RoPE tables (no learnable weights). Key: ``periods`` [head_dim // 4] (persistent).

    ``forward(h, w, n_prefix)`` returns ``(sin, cos)`` of shape [n_prefix + h*w, head_dim] for the
    whole token sequence: prefix rows are the identity (cos 1, sin 0), and the sign of the first half
    of ``sin`` is folded in so that ``rope(x) = x * cos + swap_halves(x) * sin`` equals the usual
    ``x * cos + rotate_half(x) * sin`` bit for bit.

    Explained in notebooks/07_architecture.ipynb §3.
    """

    def __init__(
        self, head_dim: int, base: float = 100.0, rescale_coords: float | None = None, dtype: torch.dtype | None = None
    ):
        super().__init__()
        if head_dim % 4:
            raise ConfigError(f"RoPE 需要 head_dim 是 4 的倍数, 现在 head_dim={head_dim}。")
        self.head_dim = head_dim
        self.base = base
        self.rescale_coords = rescale_coords
        self.dtype = dtype
        self.register_buffer("periods", torch.empty(head_dim // 4, dtype=dtype), persistent=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.periods.data = rope_periods(self.head_dim, self.base, self.dtype, self.periods.device)

    def forward(self, h: int, w: int, n_prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
        dd = {"device": self.periods.device, "dtype": self.dtype or torch.get_default_dtype()}
        ys = torch.arange(0.5, h, **dd) / h  # 'separate' normalization
        xs = torch.arange(0.5, w, **dd) / w
        coords = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).flatten(0, 1)
        coords = 2.0 * coords - 1.0  # [h*w, 2] in [-1, 1]
        if self.training and self.rescale_coords is not None:
            # log-uniform factor in [1/r, r], one draw per call (as DINOv3)
            log_r = math.log(self.rescale_coords)
            coords *= torch.empty(1, **dd).uniform_(-log_r, log_r).exp()
        angles = 2 * math.pi * coords[:, :, None] / self.periods[None, None, :]
        angles = angles.flatten(1, 2)  # [h*w, head_dim // 2]
        s, c = torch.sin(angles), torch.cos(angles)
        sin = torch.cat([-s, s], dim=1)
        cos = torch.cat([c, c], dim=1)
        if n_prefix:
            sin = torch.cat([sin.new_zeros(n_prefix, self.head_dim), sin], dim=0)
            cos = torch.cat([cos.new_ones(n_prefix, self.head_dim), cos], dim=0)
        return sin, cos


def _apply_rope(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """RoPE in the table dtype (fp32), result cast back to x.dtype. x: [..., N, head_dim]."""
    xr = x.to(cos.dtype)
    half = x.shape[-1] // 2
    swapped = torch.cat([xr[..., half:], xr[..., :half]], dim=-1)
    return (xr * cos + swapped * sin).to(x.dtype)


class MaskedBiasLinear(nn.Linear):
    """qkv Linear whose bias is multiplied by the buffer ``bias_mask`` (1 for q and v, 0 for k).

    The official layer creates the buffer as NaN and relies on the checkpoint to fill it; here it
    starts finite so that a randomly initialised model gives finite outputs.

    Explained in notebooks/07_architecture.ipynb §3.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=True)
        d = out_features // 3
        self.register_buffer("bias_mask", torch.cat([torch.ones(d), torch.zeros(d), torch.ones(d)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias * self.bias_mask.to(self.bias.dtype))


class Attention(nn.Module):
    """Explained in notebooks/07_architecture.ipynb §3."""

    def __init__(self, dim: int, num_heads: int, mask_k_bias: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = MaskedBiasLinear(dim, dim * 3) if mask_k_bias else nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        qk = _apply_rope(qkv[:2], *rope)  # q and k together: [2, B, heads, N, head_dim]
        out = F.scaled_dot_product_attention(qk[0], qk[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class LayerScale(nn.Module):
    """Explained in notebooks/07_architecture.ipynb §3."""

    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.init_value = init_value
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """Explained in notebooks/07_architecture.ipynb §3."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwiGLU(nn.Module):
    """w3(silu(w1 x) * w2 x); hidden = int(2/3 * hidden_features) rounded up to a multiple of 8.

    Explained in notebooks/07_architecture.ipynb §3.
    """

    def __init__(self, dim: int, hidden_features: int):
        super().__init__()
        d = int(hidden_features * 2 / 3)
        hidden = d + (-d % 8)
        self.w1 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(dim, hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(F.silu(self.w1(x)) * self.w2(x))


class Block(nn.Module):
    """Pre-norm transformer block; LayerScale only when `layerscale` is given.

    Explained in notebooks/07_architecture.ipynb §3.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        eps: float,
        ffn: str = "mlp",
        ffn_ratio: float = 4.0,
        layerscale: float | None = None,
        mask_k_bias: bool = False,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, mask_k_bias=mask_k_bias)
        self.ls1 = LayerScale(dim, layerscale) if layerscale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        hidden = int(dim * ffn_ratio)
        self.mlp = SwiGLU(dim, hidden) if ffn == "swiglu" else Mlp(dim, hidden)
        self.ls2 = LayerScale(dim, layerscale) if layerscale else nn.Identity()

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection: [B, 3, H, W] -> [B, (H/p)(W/p), D].

    Explained in notebooks/07_architecture.ipynb §3.
    """

    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def _check_layers(return_layers, depth: int) -> list[int]:
    layers = [int(i) for i in return_layers]
    if not layers or len(set(layers)) != len(layers) or any(not 0 <= i < depth for i in layers):
        raise ConfigError(
            f"interaction_indexes / return_layers={list(return_layers)} 无效: "
            f"需要不重复的 block 序号, 取值范围 0..{depth - 1}。"
        )
    return layers


def _init_linear_ln(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        m.reset_parameters()


class _TinyTrunk(nn.Module):
    """Holds the ViT-Tiny weights (keys under ``_model.`` as in the official code)."""

    def __init__(self, embed_dim: int, num_heads: int, depth: int, patch_size: int, eps: float):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, eps=eps) for _ in range(depth)])
        self.rope_embed = RopeEmbedding(embed_dim // num_heads, base=100.0)


class ViTTiny(nn.Module):
    """Distilled ViT-Tiny (D=192, 3 heads) / Tiny+ (D=256, 4 heads); depth 12, patch 16.

    Returned layers are the raw block outputs (no final norm), patch tokens only.

    Explained in notebooks/07_architecture.ipynb §3.
    """

    n_prefix = 1
    norm_eps = 1e-6

    def __init__(
        self, embed_dim: int = 192, num_heads: int = 3, return_layers=(3, 7, 11), depth: int = 12, patch_size: int = 16
    ):
        super().__init__()
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.return_layers = _check_layers(return_layers, depth)
        self._model = _TinyTrunk(embed_dim, num_heads, depth, patch_size, self.norm_eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self._model.cls_token, std=0.02)
        self._model.rope_embed.reset_parameters()
        self._model.blocks.apply(_init_linear_ln)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        m = self._model
        h, w = x.shape[2] // self.patch_size, x.shape[3] // self.patch_size
        tokens = m.patch_embed(x)
        tokens = torch.cat([m.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        rope = m.rope_embed(h, w, self.n_prefix)
        outs = []
        for i, blk in enumerate(m.blocks[: max(self.return_layers) + 1]):
            tokens = blk(tokens, rope)
            if i in self.return_layers:
                outs.append(tokens[:, self.n_prefix :])
        return outs


class DINOv3ViT(nn.Module):
    """Meta DINOv3 ViT-S/16 ('dinov3_vits16') or ViT-S+/16 ('dinov3_vits16plus').

    D 384, depth 12, 6 heads, 4 storage tokens, LayerScale 1e-5, LayerNorm eps 1e-5, patch 16.
    Each returned layer is normalized with the final ``norm`` (as ``get_intermediate_layers``).
    In train mode the RoPE coordinates are rescaled by a random factor in [1/2, 2], drawn anew for
    every block, exactly as the official code does.

    Explained in notebooks/07_architecture.ipynb §3.
    """

    embed_dim = 384
    num_heads = 6
    n_storage_tokens = 4
    layerscale_init = 1e-5
    norm_eps = 1e-5

    def __init__(self, name: str = "dinov3_vits16", return_layers=(5, 8, 11), patch_size: int = 16):
        super().__init__()
        if name not in DINOV3_ARCHS:
            raise ConfigError(f"未知的 DINOv3 模型名 {name!r}。可选值: {list(DINOV3_ARCHS)}。")
        ffn, ratio = DINOV3_ARCHS[name]
        dim, depth, heads = self.embed_dim, 12, self.num_heads
        self.name = name
        self.patch_size = patch_size
        self.n_prefix = 1 + self.n_storage_tokens
        self.return_layers = _check_layers(return_layers, depth)
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
        self.storage_tokens = nn.Parameter(torch.empty(1, self.n_storage_tokens, dim))
        self.mask_token = nn.Parameter(torch.empty(1, dim))
        self.patch_embed = PatchEmbed(patch_size, dim)
        self.rope_embed = RopeEmbedding(dim // heads, base=100.0, rescale_coords=2.0, dtype=torch.float32)
        self.blocks = nn.ModuleList(
            [
                Block(
                    dim,
                    heads,
                    eps=self.norm_eps,
                    ffn=ffn,
                    ffn_ratio=ratio,
                    layerscale=self.layerscale_init,
                    mask_k_bias=True,
                )
                for _ in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(dim, eps=self.norm_eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.rope_embed.reset_parameters()
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.storage_tokens, std=0.02)
        nn.init.zeros_(self.mask_token)
        bound = math.sqrt(1.0 / (3 * self.patch_size**2))
        nn.init.uniform_(self.patch_embed.proj.weight, -bound, bound)
        nn.init.uniform_(self.patch_embed.proj.bias, -bound, bound)
        self.apply(_init_linear_ln)
        for m in self.modules():
            if isinstance(m, LayerScale):
                nn.init.constant_(m.gamma, m.init_value)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, w = x.shape[2] // self.patch_size, x.shape[3] // self.patch_size
        tokens = self.patch_embed(x)
        B = tokens.shape[0]
        cls = self.cls_token + 0 * self.mask_token  # keeps mask_token in the graph, as official
        tokens = torch.cat([cls.expand(B, -1, -1), self.storage_tokens.expand(B, -1, -1), tokens], dim=1)
        per_block_rope = self.training and self.rope_embed.rescale_coords is not None
        rope = None if per_block_rope else self.rope_embed(h, w, self.n_prefix)
        outs = []
        for i, blk in enumerate(self.blocks[: max(self.return_layers) + 1]):
            if per_block_rope:
                rope = self.rope_embed(h, w, self.n_prefix)
            tokens = blk(tokens, rope)
            if i in self.return_layers:
                outs.append(self.norm(tokens[:, self.n_prefix :]))
        return outs
