"""The full detector: backbone -> encoder -> decoder."""

import torch.nn as nn
from torch import Tensor

from deimv2.models.layers import convert_to_deploy

__all__ = ["DEIM"]


class DEIM(nn.Module):
    """``forward(x [B,3,H,W], targets=None)`` = ``decoder(encoder(backbone(x)), targets)``.

    The post-processor is separate (see :class:`deimv2.models.postprocess.PostProcessor`).

    Explained in notebooks/07_architecture.ipynb §1 (deploy: §4).
    """

    def __init__(self, backbone: nn.Module, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.encoder = encoder

    def forward(self, x: Tensor, targets: list[dict[str, Tensor]] | None = None):
        return self.decoder(self.encoder(self.backbone(x)), targets)

    def deploy(self) -> "DEIM":
        """Export form: eval mode, BN/RepVGG folded in backbone and encoder, unused decoder heads dropped.

        Eval outputs do not change (up to float rounding). Returns self.
        """
        self.eval()
        convert_to_deploy(self.backbone)
        convert_to_deploy(self.encoder)
        self.decoder.deploy()
        return self
