"""The transformers port's ``config.json`` (``Deimv2Config``) <-> official DEIMv2 variants.

Which variant a port config describes, and the port config of a variant (to build
``Deimv2ForObjectDetection`` without downloading anything). Backbone facts come from the model modules,
decoder/encoder facts from the variant's YAML config. Explained in notebook ``01_weights.ipynb``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from deimv2.config.loader import load_config
from deimv2.config.variants import VARIANT_TABLE
from deimv2.models.hgnetv2 import HGNETV2_ARCHS
from deimv2.models.vit import DINOV3_ARCHS, VIT_TINY_ARCHS, DINOv3ViT, ViTTiny
from deimv2.weights.formats import vit_gated, vit_width


@cache
def _port_signature(variant: str) -> tuple[str, int, str, int]:
    """(backbone model_type, d_model, encoder_type, decoder_layers) that a port config of ``variant`` has."""
    cfg = load_config(variant)
    kind = "hgnet_v2" if VARIANT_TABLE[variant].is_hgnetv2 else "dinov3_vit"
    lite = cfg.model.encoder_type == "LiteEncoder"
    return kind, cfg.model.decoder["hidden_dim"], "lite" if lite else "hybrid", cfg.model.decoder["num_layers"]


def port_config_to_variant(config_json: Mapping[str, Any]) -> str | None:
    """Which official variant a transformers ``config.json`` (``Deimv2Config``) describes; None if none."""
    if config_json.get("model_type", "deimv2") != "deimv2":
        return None
    bb = config_json.get("backbone_config") or {}
    kind = bb.get("model_type", "hgnet_v2")
    d_model = config_json.get("d_model", 256)
    if kind == "hgnet_v2":
        candidates = [v.name for v in VARIANT_TABLE.values() if v.is_hgnetv2 and v.hidden_dim == d_model]
    elif kind == "dinov3_vit":
        width, gated = bb.get("hidden_size", 384), bool(bb.get("use_gated_mlp"))
        candidates = [
            v.name
            for v in VARIANT_TABLE.values()
            if not v.is_hgnetv2 and vit_width(v.backbone_name) == width and vit_gated(v.backbone_name) == gated
        ]
    else:
        return None
    if len(candidates) != 1:
        return None
    got = (kind, d_model, config_json.get("encoder_type", "hybrid"), config_json.get("decoder_layers", 6))
    return candidates[0] if got == _port_signature(candidates[0]) else None


def _hgnet_backbone_config(bb: Mapping[str, Any]) -> dict[str, Any]:
    """The port's HGNetV2Config fields for an official ``HGNetv2`` section (stage table of the model)."""
    arch = HGNETV2_ARCHS[bb["name"]]
    # rows: (in, mid, out, num_blocks, downsample, light_block, kernel_size, layer_num)
    ins, mids, outs, blocks, down, light, kernels, layers = (list(col) for col in zip(*arch["stages"]))
    n = len(outs)
    return dict(
        model_type="hgnet_v2",
        stem_channels=list(arch["stem"]),
        hidden_sizes=outs,
        stage_in_channels=ins,
        stage_mid_channels=mids,
        stage_out_channels=outs,
        stage_num_blocks=blocks,
        stage_downsample=down,
        stage_light_block=light,
        stage_kernel_size=kernels,
        stage_numb_of_layers=layers,
        depths=[3] * n,
        use_learnable_affine_block=bool(bb.get("use_lab", True)),
        out_indices=[i + 1 for i in bb["return_idx"]],
        stage_names=["stem"] + [f"stage{i}" for i in range(1, n + 1)],
    )


def _vit_backbone_config(bb: Mapping[str, Any]) -> dict[str, Any]:
    """The port's DINOv3ViTConfig fields for an official ``DINOv3STAs`` section."""
    name = bb["name"]
    is_dinov3 = name in DINOV3_ARCHS
    width, gated = vit_width(name), vit_gated(name)
    heads = DINOv3ViT.num_heads if is_dinov3 else VIT_TINY_ARCHS[name][1]
    inter = width * 4
    if gated:  # SwiGLU hidden size of DINOv3 ViT-S+/16: 2/3 of (ratio x width), rounded up to 8
        inter = int(width * DINOV3_ARCHS[name][1] * 2 / 3)
        inter += -inter % 8
    return dict(
        model_type="dinov3_vit",
        hidden_size=width,
        num_attention_heads=heads,
        num_hidden_layers=12,
        intermediate_size=inter,
        layerscale_value=DINOv3ViT.layerscale_init if is_dinov3 else 1.0,
        use_gated_mlp=gated,
        num_register_tokens=DINOv3ViT.n_storage_tokens if is_dinov3 else 0,
        pos_embed_rescale=2.0 if is_dinov3 else None,
        key_bias=True,
        rope_theta=100.0,
        layer_norm_eps=DINOv3ViT.norm_eps if is_dinov3 else ViTTiny.norm_eps,
        hidden_act="silu" if gated else "gelu",
        out_indices=[i + 1 for i in bb["interaction_indexes"]],
        apply_layernorm=is_dinov3,
        reshape_hidden_states=True,
    )


def port_config_for_variant(variant: str, num_classes: int = 80) -> dict[str, Any]:
    """``Deimv2Config`` keyword arguments (JSON-able) equal to an official variant's architecture.

    ``anchor_image_size`` and ``eval_size`` stay None: the port then makes anchors from the real feature
    sizes (its fixed anchors use the encoder strides, one level short for Atto/Femto/Pico) and keeps the
    AIFI position embedding in eval mode (with ``eval_size`` set the port drops it, the official model does not).
    ``key_bias=True`` for every ViT: ViT-Tiny's key bias changes the outputs (RoPE), DINOv3's is zero.
    """
    cfg = load_config(variant, num_classes=num_classes)
    dec, enc, bb = cfg.model.decoder, cfg.model.encoder, cfg.model.backbone
    lite = cfg.model.encoder_type == "LiteEncoder"
    c: dict[str, Any] = dict(
        num_labels=num_classes,
        d_model=dec["hidden_dim"],
        decoder_ffn_dim=dec["dim_feedforward"],
        decoder_layers=dec["num_layers"],
        num_feature_levels=dec["num_levels"],
        decoder_n_points=dec["num_points"],
        num_queries=dec["num_queries"],
        decoder_in_channels=dec["feat_channels"],
        eval_idx=dec.get("eval_idx", -1),
        decoder_activation_function=dec.get("activation", "silu"),
        share_bbox_head=dec.get("share_bbox_head", False),
        use_gateway=dec.get("use_gateway", True),
        anchor_image_size=None,
        eval_size=None,
        max_num_bins=dec.get("reg_max", 32),
        reg_scale=float(dec.get("reg_scale", 4)),
        layer_scale=dec.get("layer_scale", 1),
        encoder_type="lite" if lite else "hybrid",
        encoder_hidden_dim=enc["hidden_dim"],
        encoder_in_channels=enc["in_channels"],
        feat_strides=enc["feat_strides"],
        activation_function=enc.get("act", "silu"),
        depth_mult=float(enc.get("depth_mult", 1.0)),
        hidden_expansion=float(enc.get("expansion", 1.0)),
    )
    if lite:
        c["encoder_layers"] = 0
    else:
        c.update(
            encoder_layers=enc.get("num_encoder_layers", 1),
            encoder_ffn_dim=enc.get("dim_feedforward", 1024),
            encoder_attention_heads=enc.get("nhead", 8),
            encode_proj_layers=enc.get("use_encoder_idx", [2]),
            encoder_activation_function=enc.get("enc_act", "gelu"),
        )
    if cfg.model.backbone_type == "HGNetv2":
        c["backbone_config"] = _hgnet_backbone_config(bb)
        c["encoder_has_trailing_conv"] = True
    else:
        c["backbone_config"] = _vit_backbone_config(bb)
        c["encoder_has_trailing_conv"] = False
        c["spatial_tuning_adapter_inplanes"] = bb.get("conv_inplane") or 16
    return c
