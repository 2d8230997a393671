"""DINOv3STAs: ViT backbone + Spatial Tuning Adapter (STA), the backbone of DEIMv2 S/M/L/X.

The ViT gives three single-scale (stride 16) semantic maps; they are resized to strides 8/16/32
(bilinear x2, x1, x0.5), concatenated with the STA's CNN detail features of the same stride,
then projected by a 1x1 conv + SyncBatchNorm. State-dict keys equal the official
``engine/backbone/dinov3_adapter.py`` ones.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deimv2.errors import ConfigError
from deimv2.models.vit import DINOV3_ARCHS, VIT_TINY_ARCHS, DINOv3ViT, ViTTiny

__all__ = ["DINOv3STAs", "SpatialTuningAdapter"]


class SpatialTuningAdapter(nn.Module):
    """Light CNN on the raw image (official name: SpatialPriorModulev2).

    Returns features at strides 8, 16, 32 with 2c, 4c, 4c channels (c = inplanes).

    Explained in notebooks/07_architecture.ipynb §3.
    """

    def __init__(self, inplanes: int = 16):
        super().__init__()
        c = inplanes
        self.stem = nn.Sequential(  # stride 4
            nn.Conv2d(3, c, 3, 2, 1, bias=False),
            nn.SyncBatchNorm(c),
            nn.GELU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        self.conv2 = nn.Sequential(  # stride 8
            nn.Conv2d(c, 2 * c, 3, 2, 1, bias=False), nn.SyncBatchNorm(2 * c)
        )
        self.conv3 = nn.Sequential(  # stride 16
            nn.GELU(), nn.Conv2d(2 * c, 4 * c, 3, 2, 1, bias=False), nn.SyncBatchNorm(4 * c)
        )
        self.conv4 = nn.Sequential(  # stride 32
            nn.GELU(), nn.Conv2d(4 * c, 4 * c, 3, 2, 1, bias=False), nn.SyncBatchNorm(4 * c)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c2 = self.conv2(self.stem(x))
        c3 = self.conv3(c2)
        return c2, c3, self.conv4(c3)


class DINOv3STAs(nn.Module):
    """ViT (distilled ViT-Tiny/Tiny+ or DINOv3 ViT-S/S+) + STA -> 3 maps at strides 8/16/32.

    Args (official names): `name` in {'vit_tiny', 'vit_tinyplus', 'dinov3_vits16', 'dinov3_vits16plus'};
    `interaction_indexes`: ViT blocks to take (1 or 3 of them);
    `finetune=False` freezes the ViT; `embed_dim`/`num_heads` are used for the ViT-Tiny family only;
    `use_sta`: add the CNN adapter; `conv_inplane`: its base width; `hidden_dim`: output channels
    (default: the ViT width). Input height/width should be multiples of 32. Pretrained weights (the
    config's `weights_path`) are loaded by :func:`deimv2.weights.load_backbone_weights`, never here.

    Explained in notebooks/07_architecture.ipynb §3 (input normalisation: §5).
    """

    def __init__(
        self,
        name: str,
        interaction_indexes=(),
        finetune: bool = True,
        embed_dim: int = 192,
        num_heads: int = 3,
        patch_size: int = 16,
        use_sta: bool = True,
        conv_inplane: int = 16,
        hidden_dim: int | None = None,
    ):
        super().__init__()
        indexes = list(interaction_indexes)
        if len(indexes) not in (1, 3):
            raise ConfigError(
                f"DINOv3STAs 的 interaction_indexes={indexes} 无效: 需要 3 个 ViT block 序号 "
                f"(例如 [3, 7, 11] 或 [5, 8, 11]), 或 1 个 (三个尺度共用)。"
            )
        if patch_size != 16:
            raise ConfigError(f"DINOv3STAs 只支持 patch_size=16 (官方实现按 stride 16 拼接特征), 现在是 {patch_size}。")
        if name in DINOV3_ARCHS:
            self.dinov3 = DINOv3ViT(name, return_layers=indexes, patch_size=patch_size)
        elif name in VIT_TINY_ARCHS:
            self.dinov3 = ViTTiny(
                embed_dim=embed_dim, num_heads=num_heads, return_layers=indexes, patch_size=patch_size
            )
        else:
            raise ConfigError(f"未知的 DINOv3STAs name={name!r}。可选值: {list(VIT_TINY_ARCHS) + list(DINOV3_ARCHS)}。")
        self.name = name
        self.interaction_indexes = indexes
        self.patch_size = patch_size

        if not finetune:
            self.dinov3.eval()
            self.dinov3.requires_grad_(False)

        vit_dim = self.dinov3.embed_dim
        self.use_sta = use_sta
        if use_sta:
            self.sta = SpatialTuningAdapter(conv_inplane)
        else:
            conv_inplane = 0
        hidden_dim = hidden_dim if hidden_dim is not None else vit_dim
        self.out_channels = [hidden_dim] * 3
        self.out_strides = [8, 16, 32]
        detail = (2 * conv_inplane, 4 * conv_inplane, 4 * conv_inplane)
        self.convs = nn.ModuleList([nn.Conv2d(vit_dim + d, hidden_dim, 1, bias=False) for d in detail])
        self.norms = nn.ModuleList([nn.SyncBatchNorm(hidden_dim) for _ in detail])

    def vit_module(self) -> nn.Module:
        """The module whose state_dict a backbone weight file holds (ViT-Tiny: the `_model` keys; DINOv3: Meta keys)."""
        return self.dinov3._model if isinstance(self.dinov3, ViTTiny) else self.dinov3

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        B = x.shape[0]
        h, w = x.shape[2] // 16, x.shape[3] // 16
        layers = self.dinov3(x)
        if len(layers) == 1:
            layers = layers * 3
        detail = self.sta(x) if self.use_sta else (None, None, None)
        outs = []
        for i, (tokens, det) in enumerate(zip(layers, detail)):
            feat = tokens.transpose(1, 2).reshape(B, -1, h, w).contiguous()
            if i != 1:  # x2 for stride 8, x0.5 for stride 32; stride 16 stays (identity resize)
                scale = 2.0 if i == 0 else 0.5
                feat = F.interpolate(feat, size=[int(h * scale), int(w * scale)], mode="bilinear", align_corners=False)
            if det is not None:
                feat = torch.cat([feat, det], dim=1)
            outs.append(self.norms[i](self.convs[i](feat)))
        return outs
