"""Explicit builders: typed config -> modules. No registry: each part is one constructor call.

Explained in notebooks ``01_weights.ipynb`` and ``03_config.ipynb``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch.nn as nn

from deimv2.config.checks import check_image_size
from deimv2.config.loader import Config, load_config
from deimv2.models.decoder import DEIMTransformer
from deimv2.models.deim import DEIM
from deimv2.models.hgnetv2 import HGNetv2
from deimv2.models.hybrid_encoder import HybridEncoder
from deimv2.models.lite_encoder import LiteEncoder
from deimv2.models.postprocess import PostProcessor
from deimv2.models.sta import DINOv3STAs


def build_backbone(cfg: Config) -> nn.Module:
    """HGNetv2 (Atto/Femto/Pico/N) or DINOv3STAs (S/M/L/X) from the typed section
    (:class:`~deimv2.config.sections.HGNetv2Config` / :class:`~deimv2.config.sections.DINOv3STAsConfig`).
    Never loads files: the weight-file keys (``pretrained``, ``local_model_dir``, ``weights_path``) are read
    by :mod:`deimv2.weights`.

    Explained in notebooks/07_architecture.ipynb §1.
    """
    kw = cfg.model.backbone.kwargs()
    if cfg.model.backbone_type == "HGNetv2":
        return HGNetv2(**kw)
    return DINOv3STAs(**kw)


def build_encoder(cfg: Config) -> nn.Module:
    """HybridEncoder or LiteEncoder from the typed section; a HybridEncoder without its own
    ``eval_spatial_size`` gets the config's.

    Explained in notebooks/07_architecture.ipynb §1."""
    kw = cfg.model.encoder.kwargs()
    if cfg.model.encoder_type == "LiteEncoder":
        return LiteEncoder(**kw)
    if kw["eval_spatial_size"] is None:
        kw["eval_spatial_size"] = list(cfg.eval_spatial_size)
    return HybridEncoder(**kw)


def build_decoder(cfg: Config) -> nn.Module:
    """DEIMTransformer from the typed section; ``num_classes`` (and ``eval_spatial_size`` unless the section
    sets it) come from the top level of the config.

    Explained in notebooks/07_architecture.ipynb §1."""
    kw = cfg.model.decoder.kwargs()
    if kw["eval_spatial_size"] is None:
        kw["eval_spatial_size"] = list(cfg.eval_spatial_size)
    return DEIMTransformer(num_classes=cfg.num_classes, **kw)


def build_postprocessor(cfg: Config) -> nn.Module:
    """Explained in notebooks/07_architecture.ipynb §1."""
    return PostProcessor(
        num_classes=cfg.num_classes,
        use_focal_loss=cfg.use_focal_loss,
        num_top_queries=cfg.model.postprocessor.num_top_queries,
        remap_mscoco_category=cfg.remap_mscoco_category,
    )


def build_model_from_config(cfg: Config) -> nn.Module:
    """Explained in notebooks/07_architecture.ipynb §1."""
    check_image_size(cfg)
    return DEIM(build_backbone(cfg), build_encoder(cfg), build_decoder(cfg))


def build_model(
    name: str | Path | Config = "atto",
    num_classes: int | None = 80,
    overrides: Mapping[str, Any] | list[str] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a DEIMv2 detector with random weights.

    ``name``: a variant (atto, femto, pico, n, s, m, l, x), an official config name
    (``deimv2_dinov3_s_coco``), a YAML path, or a :class:`~deimv2.config.loader.Config`.
    ``overrides``: dotted keys such as ``{"DEIMTransformer.num_queries": 100}``;
    ``kwargs``: top-level keys such as ``eval_spatial_size=[416, 416]``.
    Load weights afterwards with :func:`deimv2.weights.load_weights`.

    Explained in notebooks/07_architecture.ipynb §1.
    """
    if isinstance(name, Config):
        cfg = name
        if num_classes is not None and num_classes != cfg.num_classes or overrides or kwargs:
            extra = dict(kwargs)
            if num_classes is not None:
                extra["num_classes"] = num_classes
            cfg = cfg.replace(overrides, **extra)
    else:
        if num_classes is not None:
            kwargs["num_classes"] = num_classes
        cfg = load_config(name, overrides, **kwargs)
    model = build_model_from_config(cfg)
    model.config = cfg  # kept for preprocessing (eval size, normalisation) and saving
    return model
