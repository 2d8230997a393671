"""LiteEncoder of DEIMv2 Atto/Femto/Pico: two-scale fusion without attention.

Faithful to the official ``engine/deim/lite_encoder.py`` (same keywords, state_dict keys, outputs).
From one stride-16 map it makes a stride-32 map (avg-pool + 1x1 conv), adds global context
(GAPFusion), then one FPN step and one PAN step with ELANFuseBlockDFine (RepNCSPELAN4) blocks.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from deimv2.errors import ConfigError
from deimv2.models.layers import ELANFuseBlockDFine, GAPFusion, convert_to_deploy, make_activation

__all__ = ["LiteEncoder"]


class LiteEncoder(nn.Module):
    """Input: ``[feat]`` with ``feat`` of shape ``[B, in_channels[0], H, W]`` (stride 16).

    Output: ``[P16, P32]``, both with ``hidden_dim`` channels, ``P32`` of size ``ceil(H/2) x ceil(W/2)``.
    ``eval_spatial_size`` is accepted for config compatibility and unused, as in the official code.

    Explained in notebooks/07_architecture.ipynb §1.
    """

    def __init__(
        self,
        in_channels=(512,),
        feat_strides=(16,),
        hidden_dim: int = 256,
        expansion: float = 1.0,
        depth_mult: float = 1.0,
        act: str = "silu",
        eval_spatial_size=None,
        csp_type: str = "csp2",
    ):
        super().__init__()
        if len(in_channels) != 1:
            raise ConfigError(
                f"LiteEncoder 只接受 1 个输入特征图,但 in_channels={list(in_channels)}。"
                "请让 backbone 只返回 stride 16 的一层(return_idx 只含一个索引)。"
            )
        self.in_channels = list(in_channels)
        self.feat_strides = list(feat_strides)
        self.hidden_dim = hidden_dim
        self.eval_spatial_size = eval_spatial_size
        # Official sets these to one entry each; the encoder really returns two levels.
        self.out_channels = [hidden_dim, hidden_dim]
        self.out_strides = [self.feat_strides[0], 2 * self.feat_strides[0]]

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
                for c in in_channels
            ]
        )
        # Built once and deep-copied (official order), so seeded init equals the official one.
        down = nn.Sequential(
            nn.AvgPool2d(kernel_size=3, stride=2, padding=1),
            nn.Conv2d(hidden_dim, hidden_dim, 1, 1, bias=False),
            nn.BatchNorm2d(hidden_dim),
            make_activation(act),
        )
        self.down_sample1 = copy.deepcopy(down)
        self.down_sample2 = copy.deepcopy(down)
        self.bi_fusion = GAPFusion(hidden_dim, act=act)
        fuse = ELANFuseBlockDFine(
            hidden_dim,
            hidden_dim,
            2 * hidden_dim,
            round(expansion * hidden_dim // 2),
            round(3 * depth_mult),
            act=act,
            csp_type=csp_type,
        )
        self.fpn_block = copy.deepcopy(fuse)
        self.pan_block = copy.deepcopy(fuse)

    def deploy(self) -> LiteEncoder:
        """Switch to eval mode and fold every ConvBNAct / RepVGGBlock into single convs (in place)."""
        self.eval()
        return convert_to_deploy(self)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(feats) != 1:
            raise ConfigError(
                f"LiteEncoder 期望 1 个特征图,实际收到 {len(feats)} 个。"
                "请让 backbone 的 return_idx 只含一个索引(stride 16)。"
            )
        p16 = self.input_proj[0](feats[0])
        p32 = self.bi_fusion(self.down_sample1(p16))
        out16 = self.fpn_block(p16 + F.interpolate(p32, scale_factor=2.0, mode="nearest"))
        out32 = self.pan_block(p32 + self.down_sample2(out16))
        return [out16, out32]
