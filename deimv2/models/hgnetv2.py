"""HGNetv2 CNN backbone (used by the Atto/Femto/Pico/N variants of DEIMv2).

State-dict keys and numerics follow the official ``engine/backbone/hgnetv2.py``
(PP-HGNetV2 as ported by D-FINE), so official checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deimv2.errors import ConfigError

__all__ = ["HGNetv2", "FrozenBatchNorm2d", "HGNETV2_ARCHS"]

# Stage rows: (in, mid, out, num_blocks, downsample, light_block, kernel_size, layer_num)
HGNETV2_ARCHS: dict[str, dict] = {
    "Atto": {
        "stem": (3, 16, 16),
        "stages": [
            (16, 16, 64, 1, False, False, 3, 3),
            (64, 32, 256, 1, True, False, 3, 3),
            (256, 64, 256, 1, True, True, 3, 3),
        ],
    },
    "Femto": {
        "stem": (3, 16, 16),
        "stages": [
            (16, 16, 64, 1, False, False, 3, 3),
            (64, 32, 256, 1, True, False, 3, 3),
            (256, 64, 512, 1, True, True, 5, 3),
        ],
    },
    "Pico": {
        "stem": (3, 16, 16),
        "stages": [
            (16, 16, 64, 1, False, False, 3, 3),
            (64, 32, 256, 1, True, False, 3, 3),
            (256, 64, 512, 2, True, True, 5, 3),
        ],
    },
    "B0": {
        "stem": (3, 16, 16),
        "stages": [
            (16, 16, 64, 1, False, False, 3, 3),
            (64, 32, 256, 1, True, False, 3, 3),
            (256, 64, 512, 2, True, True, 5, 3),
            (512, 128, 1024, 1, True, True, 5, 3),
        ],
    },
    "B1": {
        "stem": (3, 24, 32),
        "stages": [
            (32, 32, 64, 1, False, False, 3, 3),
            (64, 48, 256, 1, True, False, 3, 3),
            (256, 96, 512, 2, True, True, 5, 3),
            (512, 192, 1024, 1, True, True, 5, 3),
        ],
    },
    "B2": {
        "stem": (3, 24, 32),
        "stages": [
            (32, 32, 96, 1, False, False, 3, 4),
            (96, 64, 384, 1, True, False, 3, 4),
            (384, 128, 768, 3, True, True, 5, 4),
            (768, 256, 1536, 1, True, True, 5, 4),
        ],
    },
    "B3": {
        "stem": (3, 24, 32),
        "stages": [
            (32, 32, 128, 1, False, False, 3, 5),
            (128, 64, 512, 1, True, False, 3, 5),
            (512, 128, 1024, 3, True, True, 5, 5),
            (1024, 256, 2048, 1, True, True, 5, 5),
        ],
    },
    "B4": {
        "stem": (3, 32, 48),
        "stages": [
            (48, 48, 128, 1, False, False, 3, 6),
            (128, 96, 512, 1, True, False, 3, 6),
            (512, 192, 1024, 3, True, True, 5, 6),
            (1024, 384, 2048, 1, True, True, 5, 6),
        ],
    },
    "B5": {
        "stem": (3, 32, 64),
        "stages": [
            (64, 64, 128, 1, False, False, 3, 6),
            (128, 128, 512, 2, True, False, 3, 6),
            (512, 256, 1024, 5, True, True, 5, 6),
            (1024, 512, 2048, 2, True, True, 5, 6),
        ],
    },
    "B6": {
        "stem": (3, 48, 96),
        "stages": [
            (96, 96, 192, 2, False, False, 3, 6),
            (192, 192, 512, 3, True, False, 3, 6),
            (512, 384, 1024, 6, True, True, 5, 6),
            (1024, 768, 2048, 3, True, True, 5, 6),
        ],
    },
}

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "hardsigmoid": nn.Hardsigmoid,
}


def _make_act(act: str) -> nn.Module:
    key = str(act).lower()
    if key not in _ACTIVATIONS:
        raise ConfigError(f"HGNetv2 不支持激活函数 act={act!r}。可选值: {sorted(_ACTIVATIONS)}。")
    m = _ACTIVATIONS[key]()
    if hasattr(m, "inplace"):
        m.inplace = True  # as the official get_activation()
    return m


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters (all buffers).

    Keys: weight, bias, running_mean, running_var (no num_batches_tracked; it is dropped on load).

    Explained in notebooks/07_architecture.ipynb §1.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class LearnableAffineBlock(nn.Module):
    """y = scale * x + bias with two learnable scalars.

    Explained in notebooks/07_architecture.ipynb §1.
    """

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([1.0]))
        self.bias = nn.Parameter(torch.tensor([0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x + self.bias


class ConvBNAct(nn.Module):
    """Conv (no bias, 'same'-style padding) + BN [+ act [+ LearnableAffineBlock]].

    Explained in notebooks/07_architecture.ipynb §1.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        k: int,
        stride: int = 1,
        groups: int = 1,
        use_act: bool = True,
        use_lab: bool = False,
        act: str = "relu",
    ):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride, padding=(k - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = _make_act(act) if use_act else nn.Identity()
        self.lab = LearnableAffineBlock() if (use_act and use_lab) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lab(self.act(self.bn(self.conv(x))))

    @torch.no_grad()
    def convert_to_deploy(self) -> None:
        """Fold BN into a biased conv; with ReLU and a positive LAB scale ``s`` fold ``s`` too (``s * relu(z) ==
        relu(s * z)``), leaving only the LAB's bias add. Exact up to float rounding; fewer passes over the feature
        map (``benchmarks/results/torch_speedups_cpu2.json``: ``deploy`` vs ``deploy_backbone_unfolded``)."""
        if isinstance(self.bn, nn.Identity):
            return
        c, bn = self.conv, self.bn
        scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
        weight, bias = c.weight * scale.view(-1, 1, 1, 1), bn.bias - bn.running_mean * scale
        if isinstance(self.lab, LearnableAffineBlock) and isinstance(self.act, nn.ReLU) and float(self.lab.scale) > 0:
            s = self.lab.scale.detach()
            weight, bias = weight * s, bias * s
            self.lab = _AddScalar(self.lab.bias)
        fused = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, groups=c.groups)
        fused = fused.to(device=c.weight.device, dtype=c.weight.dtype)
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
        self.conv, self.bn = fused, nn.Identity()


class _AddScalar(nn.Module):
    """``x + bias`` (the part of a LearnableAffineBlock left after its scale was folded into the conv)."""

    def __init__(self, bias: torch.Tensor):
        super().__init__()
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class LightConvBNAct(nn.Module):
    """1x1 ConvBN (no act) followed by a depthwise k x k ConvBNAct.

    Explained in notebooks/07_architecture.ipynb §1.
    """

    def __init__(self, c_in: int, c_out: int, k: int, use_lab: bool = False, act: str = "relu"):
        super().__init__()
        self.conv1 = ConvBNAct(c_in, c_out, 1, use_act=False, use_lab=use_lab, act=act)
        self.conv2 = ConvBNAct(c_out, c_out, k, groups=c_out, use_lab=use_lab, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class StemBlock(nn.Module):
    """Stride-4 stem: conv s2, two-branch (2x2 convs | maxpool) concat, conv s2, 1x1 conv.

    Explained in notebooks/07_architecture.ipynb §1.
    """

    def __init__(self, c_in: int, c_mid: int, c_out: int, use_lab: bool = False, act: str = "relu"):
        super().__init__()
        kw = dict(use_lab=use_lab, act=act)
        self.stem1 = ConvBNAct(c_in, c_mid, 3, 2, **kw)
        self.stem2a = ConvBNAct(c_mid, c_mid // 2, 2, 1, **kw)
        self.stem2b = ConvBNAct(c_mid // 2, c_mid, 2, 1, **kw)
        self.stem3 = ConvBNAct(c_mid * 2, c_mid, 3, 2, **kw)
        self.stem4 = ConvBNAct(c_mid, c_out, 1, 1, **kw)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=1, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(self.stem1(x), (0, 1, 0, 1))
        branch = self.stem2b(F.pad(self.stem2a(x), (0, 1, 0, 1)))
        x = torch.cat([self._max_pool(x), branch], dim=1)
        return self.stem4(self.stem3(x))

    def _max_pool(self, x: torch.Tensor) -> torch.Tensor:
        """``self.pool(x)`` computed in channels-last memory order on CPU: the same values and gradients (the
        same first-maximum choice); torch's channels-first CPU kernel is slower for this 2x2 stride-1 window on
        the stem's large maps (``max_pool2d_with_indices`` in ``benchmarks/profile_step.py``). The output keeps
        the memory order of ``x``."""
        if x.device.type != "cpu" or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return self.pool(x)
        if x.is_contiguous(memory_format=torch.channels_last):
            return self.pool(x)
        return self.pool(x.contiguous(memory_format=torch.channels_last)).contiguous()


class HGBlock(nn.Module):
    """layer_num chained convs, concat of input and all outputs, squeeze-excite 1x1 aggregation.

    Explained in notebooks/07_architecture.ipynb §1.
    """

    def __init__(
        self,
        c_in: int,
        c_mid: int,
        c_out: int,
        layer_num: int,
        k: int,
        residual: bool,
        light_block: bool,
        use_lab: bool,
        act: str,
    ):
        super().__init__()
        self.residual = residual
        self.layers = nn.ModuleList()
        for i in range(layer_num):
            c = c_in if i == 0 else c_mid
            if light_block:
                self.layers.append(LightConvBNAct(c, c_mid, k, use_lab=use_lab, act=act))
            else:
                self.layers.append(ConvBNAct(c, c_mid, k, 1, use_lab=use_lab, act=act))
        total = c_in + layer_num * c_mid
        # The official HG_Stage default agg='se' is the only aggregation HGNetv2 builds.
        self.aggregation = nn.Sequential(
            ConvBNAct(total, c_out // 2, 1, use_lab=use_lab, act=act),
            ConvBNAct(c_out // 2, c_out, 1, use_lab=use_lab, act=act),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        y = x
        for layer in self.layers:
            y = layer(y)
            feats.append(y)
        y = self.aggregation(torch.cat(feats, dim=1))
        return y + x if self.residual else y


class HGStage(nn.Module):
    """Optional depthwise stride-2 ConvBN, then num_blocks HGBlocks (residual except the first).

    Explained in notebooks/07_architecture.ipynb §1.
    """

    def __init__(self, c_in, c_mid, c_out, num_blocks, downsample, light_block, k, layer_num, use_lab: bool, act: str):
        super().__init__()
        self.downsample = (
            ConvBNAct(c_in, c_in, 3, 2, groups=c_in, use_act=False, use_lab=use_lab, act=act)
            if downsample
            else nn.Identity()
        )
        self.blocks = nn.Sequential(
            *[
                HGBlock(
                    c_in if i == 0 else c_out,
                    c_mid,
                    c_out,
                    layer_num,
                    k,
                    residual=i > 0,
                    light_block=light_block,
                    use_lab=use_lab,
                    act=act,
                )
                for i in range(num_blocks)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


def _freeze_bn(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d below `module` by a default FrozenBatchNorm2d (as official)."""
    if isinstance(module, nn.BatchNorm2d):
        return FrozenBatchNorm2d(module.num_features)
    for name, child in module.named_children():
        new = _freeze_bn(child)
        if new is not child:
            setattr(module, name, new)
    return module


class HGNetv2(nn.Module):
    """HGNetv2 backbone. forward(x) -> list of the feature maps of stages in `return_idx`.

    Stage i output stride: 4, 8, 16, 32 (stage 0..3). `out_channels`/`out_strides` list the
    returned maps. The config's `pretrained` / `local_model_dir` (the PP-HGNetV2 stage-1 ImageNet file) are
    read by :func:`deimv2.weights.load_backbone_weights`, never here.

    Explained in notebooks/07_architecture.ipynb §1.
    """

    def __init__(
        self,
        name: str,
        use_lab: bool = False,
        return_idx=(1, 2, 3),
        freeze_stem_only: bool = True,
        freeze_at: int = 0,
        freeze_norm: bool = True,
        act: str = "relu",
    ):
        super().__init__()
        if name not in HGNETV2_ARCHS:
            raise ConfigError(f"未知的 HGNetv2 name={name!r}。可选值: {list(HGNETV2_ARCHS)}。")
        arch = HGNETV2_ARCHS[name]
        n_stages = len(arch["stages"])
        return_idx = list(return_idx)
        if not return_idx or any(not 0 <= int(i) < n_stages for i in return_idx):
            raise ConfigError(
                f"HGNetv2 '{name}' 只有 {n_stages} 个 stage, return_idx={return_idx} 无效 "
                f"(取值范围 0..{n_stages - 1})。"
            )
        self.name = name
        self.use_lab = use_lab
        self.return_idx = [int(i) for i in return_idx]
        self._last_stage = max(self.return_idx)
        strides = [4, 8, 16, 32]
        self.out_channels = [arch["stages"][i][2] for i in self.return_idx]
        self.out_strides = [strides[i] for i in self.return_idx]

        self.stem = StemBlock(*arch["stem"], use_lab=use_lab, act=act)
        self.stages = nn.ModuleList([HGStage(*row, use_lab=use_lab, act=act) for row in arch["stages"]])

        if freeze_at >= 0:
            self.stem.requires_grad_(False)
            if not freeze_stem_only:
                for stage in self.stages[: freeze_at + 1]:
                    stage.requires_grad_(False)
        if freeze_norm:
            _freeze_bn(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages[: self._last_stage + 1]):
            x = stage(x)
            if i in self.return_idx:
                outs.append(x)
        return outs
