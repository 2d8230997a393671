"""Convolution building blocks shared by the DEIMv2 encoders.

Attribute names follow the official DEIMv2 code so that official checkpoints load with
``strict=True``. Blocks that can be re-parameterised for inference expose
``convert_to_deploy()``; :func:`convert_to_deploy` walks a model and calls them.

Deploy-mode state_dict keys (same as official):
  * :class:`ConvBNAct` -> ``conv_bn_fused.weight`` / ``conv_bn_fused.bias``
  * :class:`RepVGGBlock` -> ``conv.weight`` / ``conv.bias``
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deimv2.errors import ConfigError

__all__ = [
    "make_activation",
    "fuse_conv_bn",
    "convert_to_deploy",
    "ConvBNAct",
    "RepVGGBlock",
    "RepCSPBlock",
    "ELANFuseBlockDFine",
    "ELANFuseBlockDEIM",
    "SCDown",
    "GAPFusion",
]

_ACTIVATIONS = {
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "hardsigmoid": nn.Hardsigmoid,
}


def make_activation(act: str | nn.Module | None, inplace: bool = True) -> nn.Module:
    """Activation module from a config name (``None`` -> Identity). In-place where supported, like official.

    Explained in notebooks/07_architecture.ipynb §1.
    """
    if act is None:
        return nn.Identity()
    if isinstance(act, nn.Module):
        return act
    cls = _ACTIVATIONS.get(str(act).lower())
    if cls is None:
        raise ConfigError(
            f"未知的激活函数 act={act!r}。请在配置文件中改为以下之一: {', '.join(sorted(_ACTIVATIONS))}。"
        )
    module = cls()
    if hasattr(module, "inplace"):
        module.inplace = inplace
    return module


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel and bias of one conv equal to ``bn(conv(x))`` with BN in eval mode.

    Explained in notebooks/07_architecture.ipynb §4.
    """
    std = (bn.running_var + bn.eps).sqrt()
    kernel = conv.weight * (bn.weight / std).reshape(-1, 1, 1, 1)
    mean = bn.running_mean if conv.bias is None else bn.running_mean - conv.bias
    return kernel, bn.bias - mean * bn.weight / std


def convert_to_deploy(module: nn.Module) -> nn.Module:
    """Re-parameterise every block below ``module`` that has ``convert_to_deploy()``; returns ``module``.

    A converted block is not descended into (its children are already folded). Call in eval mode:
    the folding uses BN running statistics.

    Explained in notebooks/07_architecture.ipynb §4.
    """
    fn = getattr(module, "convert_to_deploy", None)
    if callable(fn):
        fn()
        return module
    for child in module.children():
        convert_to_deploy(child)
    return module


class ConvBNAct(nn.Module):
    """Conv2d -> BatchNorm2d -> activation (official ``ConvNormLayer`` / ``ConvNormLayer_fuse``).

    ``convert_to_deploy()`` folds BN into a single biased conv named ``conv_bn_fused``.

    Explained in notebooks/07_architecture.ipynb §4.
    """

    def __init__(
        self,
        ch_in: int,
        ch_out: int,
        kernel_size: int,
        stride: int = 1,
        g: int = 1,
        padding: int | None = None,
        bias: bool = False,
        act: str | None = None,
    ):
        super().__init__()
        padding = (kernel_size - 1) // 2 if padding is None else padding
        self.conv = nn.Conv2d(ch_in, ch_out, kernel_size, stride, padding=padding, groups=g, bias=bias)
        self.norm = nn.BatchNorm2d(ch_out)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = getattr(self, "conv_bn_fused", None)
        if fused is not None:
            return self.act(fused(x))
        return self.act(self.norm(self.conv(x)))

    @torch.no_grad()
    def convert_to_deploy(self) -> None:
        if hasattr(self, "conv_bn_fused"):
            return
        c = self.conv
        fused = nn.Conv2d(
            c.in_channels, c.out_channels, c.kernel_size, c.stride, padding=c.padding, groups=c.groups, bias=True
        ).to(device=c.weight.device, dtype=c.weight.dtype)
        kernel, bias = fuse_conv_bn(c, self.norm)
        fused.weight.copy_(kernel)
        fused.bias.copy_(bias)
        del self.conv, self.norm
        self.conv_bn_fused = fused


class RepVGGBlock(nn.Module):
    """RepVGG block: act(BN(conv3x3(x)) + BN(conv1x1(x))) (official ``VGGBlock``).

    ``convert_to_deploy()`` merges both branches into one 3x3 conv named ``conv``.

    Explained in notebooks/07_architecture.ipynb §4.
    """

    def __init__(self, ch_in: int, ch_out: int, act: str | None = "relu"):
        super().__init__()
        self.conv1 = ConvBNAct(ch_in, ch_out, 3, 1, padding=1)
        self.conv2 = ConvBNAct(ch_in, ch_out, 1, 1, padding=0)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = getattr(self, "conv", None)
        if conv is not None:
            return self.act(conv(x))
        y = self.conv1(x)
        return self.act(y.add_(self.conv2(x)))

    @torch.no_grad()
    def convert_to_deploy(self) -> None:
        if hasattr(self, "conv"):
            return
        k3, b3 = fuse_conv_bn(self.conv1.conv, self.conv1.norm)
        k1, b1 = fuse_conv_bn(self.conv2.conv, self.conv2.norm)
        w = self.conv1.conv.weight
        conv = nn.Conv2d(w.shape[1], w.shape[0], 3, 1, padding=1, bias=True).to(device=w.device, dtype=w.dtype)
        conv.weight.copy_(k3 + F.pad(k1, [1, 1, 1, 1]))
        conv.bias.copy_(b3 + b1)
        del self.conv1, self.conv2
        self.conv = conv


class RepCSPBlock(nn.Module):
    """CSP block with RepVGG bottlenecks (official ``CSPLayer2``, i.e. RepC3).

    One 1x1 conv makes two halves; the output is conv3(a + bottlenecks(b)).

    Explained in notebooks/07_architecture.ipynb §1.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_blocks: int = 3,
        expansion: float = 1.0,
        bias: bool = False,
        act: str | None = "silu",
    ):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = ConvBNAct(in_channels, hidden * 2, 1, 1, bias=bias, act=act)
        self.bottlenecks = nn.Sequential(*[RepVGGBlock(hidden, hidden, act=act) for _ in range(num_blocks)])
        self.conv3 = (
            ConvBNAct(hidden, out_channels, 1, 1, bias=bias, act=act) if hidden != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.conv1(x).chunk(2, 1)
        return self.conv3(a + self.bottlenecks(b))


class _ELANFuseBlock(nn.Module):
    """CSP-ELAN: cv1 splits into two halves; cv2 and cv3 extend the last one; cv4 merges all four."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).split((self.c, self.c), 1)
        c = self.cv2(b)
        d = self.cv3(c)
        return self.cv4(torch.cat((a, b, c, d), 1))


class ELANFuseBlockDFine(_ELANFuseBlock):
    """Fuse block of ``version='dfine'`` and LiteEncoder (official ``RepNCSPELAN4`` with csp_type 'csp2').

    Each branch is RepCSPBlock followed by a 3x3 ConvBNAct.

    Explained in notebooks/07_architecture.ipynb §1.
    """

    def __init__(
        self,
        c1: int,
        c2: int,
        c3: int,
        c4: int,
        n: int = 3,
        bias: bool = False,
        act: str | None = "silu",
        csp_type: str = "csp2",
    ):
        super().__init__()
        if csp_type != "csp2":
            raise ConfigError(
                f"csp_type={csp_type!r} 不受支持: 官方 DEIMv2 的 RepNCSPELAN4 只实现了 'csp2'。"
                "请在配置文件中设置 csp_type: csp2。"
            )
        self.c = c3 // 2
        self.cv1 = ConvBNAct(c1, c3, 1, 1, bias=bias, act=act)
        self.cv2 = nn.Sequential(
            RepCSPBlock(c3 // 2, c4, n, 1, bias=bias, act=act), ConvBNAct(c4, c4, 3, 1, bias=bias, act=act)
        )
        self.cv3 = nn.Sequential(
            RepCSPBlock(c4, c4, n, 1, bias=bias, act=act), ConvBNAct(c4, c4, 3, 1, bias=bias, act=act)
        )
        self.cv4 = ConvBNAct(c3 + 2 * c4, c2, 1, 1, bias=bias, act=act)


class ELANFuseBlockDEIM(_ELANFuseBlock):
    """Fuse block of ``version='deim'`` (official ``RepNCSPELAN5``): branches are bare RepCSPBlocks.

    Explained in notebooks/07_architecture.ipynb §1.
    """

    def __init__(self, c1: int, c2: int, c3: int, c4: int, n: int = 3, bias: bool = False, act: str | None = "silu"):
        super().__init__()
        self.c = c3 // 2
        self.cv1 = ConvBNAct(c1, c3, 1, 1, bias=bias, act=act)
        self.cv2 = nn.Sequential(RepCSPBlock(c3 // 2, c4, n, 1, bias=bias, act=act))
        self.cv3 = nn.Sequential(RepCSPBlock(c4, c4, n, 1, bias=bias, act=act))
        self.cv4 = ConvBNAct(c3 + 2 * c4, c2, 1, 1, bias=bias, act=act)


class SCDown(nn.Module):
    """Spatial-channel downsample: 1x1 ConvBN then depthwise kxk stride-s ConvBN, no activation.

    Explained in notebooks/07_architecture.ipynb §1.
    """

    def __init__(self, c1: int, c2: int, k: int, s: int):
        super().__init__()
        self.cv1 = ConvBNAct(c1, c2, 1, 1)
        self.cv2 = ConvBNAct(c2, c2, k, s, g=c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv2(self.cv1(x))


class GAPFusion(nn.Module):
    """Adds the global average to every position, then a 1x1 ConvBNAct (official ``GAP_Fusion``).

    Explained in notebooks/07_architecture.ipynb §1.
    """

    def __init__(self, channels: int, act: str | None = None):
        super().__init__()
        self.cv = ConvBNAct(channels, channels, 1, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv(x + F.adaptive_avg_pool2d(x, 1))
