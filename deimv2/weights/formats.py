"""Recognise what a weights object is: the :class:`Format` enum, the variant and the class count.

Nothing here reads files or renames keys (see :mod:`.loader` and :mod:`.keys`); detection works on the
object ``torch.load`` / safetensors returned. Control flow tests :class:`Format` members; the Chinese
``label`` is only shown to users. Explained in notebook ``01_weights.ipynb``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

import torch

from deimv2.config.variants import VARIANT_TABLE, VARIANTS_BY_HIDDEN
from deimv2.models.vit import DINOV3_ARCHS, VIT_TINY_ARCHS, DINOv3ViT


class Format(Enum):
    """Every weights format we read; ``kind`` is 'detector', 'backbone' or 'unknown'."""

    OFFICIAL_EMA = ("detector", "官方 .pth（EMA 权重）")
    OFFICIAL_MODEL = ("detector", "官方 .pth（model 权重）")
    TRAINING_EMA = ("detector", "deimv2 训练 checkpoint（EMA 权重）")
    TRAINING_MODEL = ("detector", "deimv2 训练 checkpoint")
    STATE_DICT = ("detector", "state_dict / Hugging Face hub（safetensors）")
    TRANSFORMERS_PORT = ("detector", "Hugging Face transformers（Deimv2ForObjectDetection）")
    VIT_TINY = ("backbone", "ViT-Tiny 蒸馏骨干（vitt/vittplus）")
    DINOV3_META = ("backbone", "DINOv3（Meta .pth 格式）")
    DINOV3_HF = ("backbone", "DINOv3（Hugging Face 格式）")
    HGNETV2 = ("backbone", "HGNetv2 stage1（ImageNet 预训练）")
    UNKNOWN = ("unknown", "不是 DEIMv2 的权重文件")

    def __init__(self, kind: str, label: str):
        self.kind = kind
        self.label = label

    def __str__(self) -> str:
        return self.label


# --------------------------------------------------------------------------- backbone facts (from the models)
def vit_width(backbone_name: str) -> int:
    """Token width of the ViT inside DINOv3STAs ``backbone_name``."""
    return VIT_TINY_ARCHS[backbone_name][0] if backbone_name in VIT_TINY_ARCHS else DINOv3ViT.embed_dim


def vit_gated(backbone_name: str) -> bool:
    """True when the ViT's MLP is SwiGLU (``w1/w2/w3``; DINOv3 ViT-S+/16)."""
    return backbone_name in DINOV3_ARCHS and DINOV3_ARCHS[backbone_name][0] == "swiglu"


_DINO = [v for v in VARIANT_TABLE.values() if not v.is_hgnetv2]
#: ViT-Tiny(+) width -> variant (a vitt/vittplus file is told apart by its cls token)
_VIT_TINY_BY_WIDTH = {vit_width(v.backbone_name): v.name for v in _DINO if v.is_vit_tiny}
#: gated MLP? -> DINOv3 variant (ViT-S/16 vs ViT-S+/16 files)
_DINOV3_BY_GATED = {vit_gated(v.backbone_name): v.name for v in _DINO if not v.is_vit_tiny}


# --------------------------------------------------------------------------- state dicts
def is_tensor_dict(obj: Any) -> bool:
    """A non-empty mapping whose values are all tensors (a state dict)."""
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def is_transformers_port(sd: Mapping[str, Any]) -> bool:
    """True for a ``Deimv2ForObjectDetection`` state dict (``model.conv_encoder.*`` + ``model.decoder.*``)."""
    keys = list(sd)
    return any(k.startswith("model.conv_encoder.") for k in keys) and any(k.startswith("model.decoder.") for k in keys)


def _is_detector_state(sd: Any) -> bool:
    """A state dict with official detector keys (``decoder.*``); a backbone file wrapped in ``model`` is none."""
    return is_tensor_dict(sd) and any(k.startswith("decoder.") for k in sd)


def detector_format(obj: Any) -> tuple[Format, Mapping[str, torch.Tensor]]:
    """(format, state dict as stored) of a detector checkpoint object; ``(Format.UNKNOWN, {})`` if it is none.

    EMA weights win over ``model``; a transformers port state dict is returned unconverted.
    """
    if not isinstance(obj, Mapping):
        return Format.UNKNOWN, {}
    ours = "class_names" in obj and "version" in obj
    ema = obj.get("ema")
    if isinstance(ema, Mapping) and _is_detector_state(ema.get("module")):
        return (Format.TRAINING_EMA if ours else Format.OFFICIAL_EMA), ema["module"]
    if _is_detector_state(obj.get("model")):
        return (Format.TRAINING_MODEL if ours else Format.OFFICIAL_MODEL), obj["model"]
    if is_tensor_dict(obj):
        if _is_detector_state(obj) and any(k.startswith("backbone.") for k in obj):
            return Format.STATE_DICT, obj
        if is_transformers_port(obj):
            return Format.TRANSFORMERS_PORT, obj
    return Format.UNKNOWN, {}


def backbone_state(obj: Any) -> Mapping[str, torch.Tensor]:
    """The flat state dict of a backbone file (HGNetv2 files wrap it in ``model``); ``{}`` if there is none."""
    if is_tensor_dict(obj):
        return obj
    inner = obj.get("model") if isinstance(obj, Mapping) else None
    return inner if is_tensor_dict(inner) else {}


def backbone_file_variant(sd: Mapping[str, torch.Tensor]) -> tuple[str | None, Format]:
    """(variant, format) of a flat backbone state dict: ViT-Tiny(+), DINOv3 (Meta or HF), HGNetv2 stage1.

    The variant is None for HGNetv2 files (one B0 file serves Atto/Femto/Pico/N).
    """
    keys = set(sd)
    if "cls_token" in keys and "storage_tokens" not in keys:
        return _VIT_TINY_BY_WIDTH.get(int(sd["cls_token"].shape[-1])), Format.VIT_TINY
    if "storage_tokens" in keys:
        return _DINOV3_BY_GATED["blocks.0.mlp.w1.weight" in keys], Format.DINOV3_META
    hf = {k.removeprefix("model.") for k in keys}
    if "embeddings.register_tokens" in hf:
        return _DINOV3_BY_GATED[any(k.endswith("mlp.gate_proj.weight") for k in hf)], Format.DINOV3_HF
    if any(k.startswith("stem.") for k in keys) and any(k.startswith("stages.") for k in keys):
        return None, Format.HGNETV2
    return None, Format.UNKNOWN


def detect_format(obj: Any) -> Format:
    """The :class:`Format` of anything ``torch.load`` or safetensors returned."""
    fmt, _ = detector_format(obj)
    if fmt is not Format.UNKNOWN:
        return fmt
    flat = backbone_state(obj)
    return backbone_file_variant(flat)[1] if flat else Format.UNKNOWN


def variant_of_state_dict(sd: Mapping[str, torch.Tensor]) -> str | None:
    """Which variant an official-layout detector state dict belongs to (None if it is not a DEIMv2 detector).

    The decoder width identifies it; M and X (both 256) differ in the backbone (ViT-Tiny+ keys sit under
    ``backbone.dinov3._model.``).
    """
    emb = sd.get("decoder.denoising_class_embed.weight")
    if emb is None:
        return None
    candidates = VARIANTS_BY_HIDDEN.get(int(emb.shape[1]), ())
    if len(candidates) > 1:
        tiny = any(k.startswith("backbone.dinov3._model.") for k in sd)
        candidates = tuple(c for c in candidates if VARIANT_TABLE[c].is_vit_tiny == tiny)
    return candidates[0] if candidates else None


def num_classes_of_state_dict(sd: Mapping[str, torch.Tensor]) -> int | None:
    """Class count of a detector state dict (the denoising embedding has one extra row)."""
    emb = sd.get("decoder.denoising_class_embed.weight")
    return int(emb.shape[0]) - 1 if emb is not None else None
