"""DEIMv2 model parts: backbones (hgnetv2, vit, sta), encoders, decoder, post-processor and builders.

The criterion (loss) is not a model part: it is built by :func:`deimv2.loss.build_criterion`.
"""

from deimv2.models.build import build_backbone, build_decoder, build_encoder, build_model, build_postprocessor
from deimv2.models.deim import DEIM

__all__ = [
    "DEIM",
    "build_model",
    "build_backbone",
    "build_encoder",
    "build_decoder",
    "build_postprocessor",
]
