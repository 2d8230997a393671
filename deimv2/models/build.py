"""Explicit builders: typed config -> modules. No registry: each part is one constructor call.

Explained in notebooks ``01_weights.ipynb`` and ``03_config.ipynb``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch.nn as nn

from ..config import Config, load_config

#: keys of the official YAML sections that are not constructor arguments
_NOT_KWARGS = {"type"}
#: backbone keys that name pretrained weight files (loaded by deimv2.checkpoints, not by the constructors)
_WEIGHT_FILE_KEYS = {"pretrained", "local_model_dir", "weights_path"}


def _kwargs(section: Mapping[str, Any]) -> dict:
    return {k: v for k, v in section.items() if k not in _NOT_KWARGS}


def build_backbone(cfg: Config) -> nn.Module:
    """HGNetv2 (Atto/Femto/Pico/N) or DINOv3STAs (S/M/L/X). Never loads files: the weight-file keys
    (``pretrained``, ``local_model_dir``, ``weights_path``) are read by :mod:`deimv2.checkpoints`.

    Explained in notebooks/07_architecture.ipynb §1.
    """
    kw = {k: v for k, v in _kwargs(cfg.model.backbone).items() if k not in _WEIGHT_FILE_KEYS}
    if cfg.model.backbone_type == "HGNetv2":
        from .hgnetv2 import HGNetv2

        return HGNetv2(**kw)
    from .sta import DINOv3STAs

    return DINOv3STAs(**kw)


def build_encoder(cfg: Config) -> nn.Module:
    """Explained in notebooks/07_architecture.ipynb §1."""
    kw = _kwargs(cfg.model.encoder)
    if cfg.model.encoder_type == "LiteEncoder":
        from .lite_encoder import LiteEncoder

        return LiteEncoder(**kw)
    from .hybrid_encoder import HybridEncoder

    kw.setdefault("eval_spatial_size", cfg.eval_spatial_size)
    return HybridEncoder(**kw)


def build_decoder(cfg: Config) -> nn.Module:
    """Explained in notebooks/07_architecture.ipynb §1."""
    from .decoder import DEIMTransformer

    kw = _kwargs(cfg.model.decoder)
    kw.setdefault("eval_spatial_size", cfg.eval_spatial_size)
    return DEIMTransformer(num_classes=cfg.num_classes, **kw)


def build_postprocessor(cfg: Config) -> nn.Module:
    """Explained in notebooks/07_architecture.ipynb §1."""
    from .postprocess import PostProcessor

    return PostProcessor(
        num_classes=cfg.num_classes,
        use_focal_loss=bool(cfg.raw.get("use_focal_loss", True)),
        num_top_queries=cfg.model.num_top_queries,
        remap_mscoco_category=cfg.remap_mscoco_category,
    )


def build_model_from_config(cfg: Config) -> nn.Module:
    """Explained in notebooks/07_architecture.ipynb §1."""
    from ..config_checks import check_image_size
    from .deim import DEIM

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
    (``deimv2_dinov3_s_coco``), a YAML path, or a :class:`~deimv2.config.Config`.
    ``overrides``: dotted keys such as ``{"DEIMTransformer.num_queries": 100}``;
    ``kwargs``: top-level keys such as ``eval_spatial_size=[416, 416]``.
    Load weights afterwards with :func:`deimv2.checkpoints.load_weights`.

    Explained in notebooks/07_architecture.ipynb §1.
    """
    if isinstance(name, Config):
        cfg = name
        if num_classes is not None and num_classes != cfg.num_classes or overrides or kwargs:
            extra = dict(kwargs)
            if num_classes is not None:
                extra["num_classes"] = num_classes
            cfg = load_config({**cfg.raw, "__name__": cfg.name}, overrides, **extra)
    else:
        if num_classes is not None:
            kwargs["num_classes"] = num_classes
        cfg = load_config(name, overrides, **kwargs)
    model = build_model_from_config(cfg)
    model.config = cfg  # kept for preprocessing (eval size, normalisation) and saving
    return model


def build_criterion(cfg: Config) -> nn.Module:
    """Explained in notebooks/09_loss.ipynb §5."""
    from ..loss import build_criterion as _build

    c, m = cfg.criterion, cfg.criterion.matcher
    return _build(
        num_classes=cfg.num_classes,
        weight_dict=c.weight_dict,
        losses=c.losses,
        gamma=c.gamma,
        alpha=c.alpha,
        reg_max=c.reg_max,
        use_uni_set=c.use_uni_set,
        matcher_weight_dict=m.weight_dict,
        matcher_alpha=m.alpha,
        matcher_gamma=m.gamma,
        change_matcher=m.change_matcher,
        iou_order_alpha=m.iou_order_alpha,
        matcher_change_epoch=m.matcher_change_epoch,
    )
