"""All key renaming: official DEIMv2 <-> transformers port (``Deimv2ForObjectDetection``), DINOv3 HF -> Meta.

One set of rename rules (official template <-> port template) serves both directions of the port and the
Hugging Face ``DINOv3ViTModel`` backbone files (their ViT keys are the port's, without its prefix).

Transformers port (transformers >= 5). transformers is never imported: only key names and tensors are translated, so users can load a port
checkpoint (``model.safetensors`` + ``config.json`` written by ``save_pretrained``) without it.

What the port renames or reshapes (official -> port):

- every module path (``backbone.*`` -> ``model.conv_encoder.*``, ``decoder.decoder.*`` -> ``model.decoder.*``,
  ``cv1/cv2/cv3/cv4`` -> ``conv1/csp_rep1/csp_rep2/conv2``, ``norm1.scale`` -> ``self_attn_layer_norm.weight`` ...);
- ``nn.MultiheadAttention.in_proj_weight/bias`` (AIFI encoder, decoder self-attention) -> ``q_proj/k_proj/v_proj``;
- decoder SwiGLU ``w12`` -> ``gate_proj`` (first half) and ``up_proj`` (second half);
- ViT ``attn.qkv`` -> ``q_proj/k_proj/v_proj``. With RoPE the key bias matters (it is rotated per position):
  ViT-Tiny (S/M) uses it, DINOv3 (L/X) masks it to zero (``bias_mask``). Port files without ``k_proj.bias``
  (``key_bias=False``) get a zero key bias; a port key bias of DINOv3 is masked, as in the official model;
- DINOv3 ``storage_tokens`` -> ``register_tokens``, ``mask_token [1, D]`` -> ``[1, 1, D]``.

Tensors only the port has: ``model.enc_output`` (Linear + LayerNorm; the official decoder has none, the
port's converter fills identity + default LayerNorm), ViT-Tiny's ``mask_token``, empty ``register_tokens``,
final ``norm`` and all-ones layer scales, and tied copies of the heads at the top level (``class_embed.*``,
``bbox_embed.*``). Tensors only the official model has are recomputed here: ``decoder.anchors/valid_mask``,
``rope_embed.periods``, ``qkv.bias_mask``, ``num_batches_tracked``, the second copy of ``up``/``reg_scale``,
and bbox heads that ``save_pretrained`` stored once (shared heads).

The weights convert exactly, but the port (checked with transformers 5.23) does not compute the same
function as the official model, so its outputs differ from ours and the official ones: it applies
``enc_output``'s LayerNorm to the encoder memory; it uses ReLU where the official heads use SiLU
(``enc_bbox_head``, ``pre_bbox_head``, ``bbox_embed``, LQE); it recomputes the query position embedding in
every decoder layer (official: once, from the first reference points); for ViT-Tiny (S/M) it applies the
final LayerNorm to the last feature map. With those four changed back, port and converted model agree to
< 1e-5 on all eight variants (random weights). After conversion this package computes the official function.

Explained in notebook ``01_weights.ipynb``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

import torch

from deimv2.config.loader import Config, load_config
from deimv2.config.variants import variant_of_config_name
from deimv2.errors import WeightsError
from deimv2.models.decoder import feature_shapes, make_anchors
from deimv2.models.vit import VIT_TINY_ARCHS, DINOv3ViT, rope_periods
from deimv2.weights.formats import variant_of_state_dict

# --------------------------------------------------------------------------- key templates
#: placeholder letter -> regex of what it matches (``{r}``: the rest of a key, several segments)
_SLOTS = {"i": r"\d+", "j": r"\d+", "t": r"[^.]+", "s": r"[^.]+", "r": r".+", "b": r"(?:fpn|pan)_blocks?(?:\.\d+)?"}
_SLOT_RE = re.compile(r"\{(\w)\}")


def _compile(template: str) -> re.Pattern:
    pieces = _SLOT_RE.split(template)
    body = "".join(re.escape(p) if n % 2 == 0 else f"(?P<{p}>{_SLOTS[p]})" for n, p in enumerate(pieces))
    return re.compile(body + r"\Z")


def _fill(template: str, groups: Mapping[str, str]) -> str:
    return _SLOT_RE.sub(lambda m: groups[m.group(1)], template)


class _Rules:
    """Ordered (official template, port template) pairs; the first rule that matches wins, both ways."""

    def __init__(self, pairs: Iterable[tuple[str, str]]):
        self.pairs = [(o, p, _compile(o), _compile(p)) for o, p in pairs]

    def to_port(self, key: str) -> str | None:
        for _o, p, ro, _ in self.pairs:
            m = ro.match(key)
            if m:
                return _fill(p, m.groupdict())
        return None

    def to_official(self, key: str) -> str | None:
        for o, _p, _, rp in self.pairs:
            m = rp.match(key)
            if m:
                return _fill(o, m.groupdict())
        return None


_DECODER = [
    ("decoder.input_proj.{i}.{r}", "model.decoder_input_proj.{i}.{r}"),
    ("decoder.decoder.layers.{i}.self_attn.out_proj.{t}", "model.decoder.layers.{i}.self_attn.o_proj.{t}"),
    ("decoder.decoder.layers.{i}.norm1.scale", "model.decoder.layers.{i}.self_attn_layer_norm.weight"),
    ("decoder.decoder.layers.{i}.cross_attn.{r}", "model.decoder.layers.{i}.encoder_attn.{r}"),
    ("decoder.decoder.layers.{i}.norm2.scale", "model.decoder.layers.{i}.encoder_attn_layer_norm.weight"),
    ("decoder.decoder.layers.{i}.gateway.gate.{t}", "model.decoder.layers.{i}.gateway.gate.{t}"),
    ("decoder.decoder.layers.{i}.gateway.norm.scale", "model.decoder.layers.{i}.gateway.norm.weight"),
    ("decoder.decoder.layers.{i}.swish_ffn.w3.{t}", "model.decoder.layers.{i}.mlp.down_proj.{t}"),
    ("decoder.decoder.layers.{i}.norm3.scale", "model.decoder.layers.{i}.final_layer_norm.weight"),
    ("decoder.decoder.lqe_layers.{r}", "model.decoder.lqe_layers.{r}"),
    ("decoder.decoder.up", "model.decoder.up"),
    ("decoder.decoder.reg_scale", "model.decoder.reg_scale"),
    ("decoder.denoising_class_embed.weight", "model.denoising_class_embed.weight"),
    ("decoder.enc_score_head.{t}", "model.enc_score_head.{t}"),
    ("decoder.enc_bbox_head.{r}", "model.enc_bbox_head.{r}"),
    ("decoder.query_pos_head.{r}", "model.decoder.query_pos_head.{r}"),
    ("decoder.pre_bbox_head.{r}", "model.decoder.pre_bbox_head.{r}"),
    ("decoder.dec_score_head.{i}.{t}", "model.decoder.class_embed.{i}.{t}"),
    ("decoder.dec_bbox_head.{i}.{r}", "model.decoder.bbox_embed.{i}.{r}"),
]
#: RepNCSPELAN blocks of both encoders (csp_rep*.conv2 is the optional trailing 3x3 conv: official cv2.1/cv3.1)
_ELAN = [
    ("encoder.{b}.cv1.{r}", "model.encoder.{b}.conv1.{r}"),
    ("encoder.{b}.cv2.1.{r}", "model.encoder.{b}.csp_rep1.conv2.{r}"),
    ("encoder.{b}.cv2.0.{r}", "model.encoder.{b}.csp_rep1.{r}"),
    ("encoder.{b}.cv3.1.{r}", "model.encoder.{b}.csp_rep2.conv2.{r}"),
    ("encoder.{b}.cv3.0.{r}", "model.encoder.{b}.csp_rep2.{r}"),
    ("encoder.{b}.cv4.{r}", "model.encoder.{b}.conv2.{r}"),
]
_LITE = [
    ("encoder.input_proj.{i}.{r}", "model.encoder.input_proj.{i}.{r}"),
    ("encoder.down_sample{i}.1.weight", "model.encoder.down_conv{i}.conv.weight"),
    ("encoder.down_sample{i}.2.{t}", "model.encoder.down_conv{i}.norm.{t}"),
    ("encoder.bi_fusion.cv.{r}", "model.encoder.bi_fusion_conv.{r}"),
]
_AIFI = "encoder.encoder.{i}.layers.{j}."
_AIFI_PORT = "model.encoder.aifi.{i}.layers.{j}."
_HYBRID = [
    ("encoder.input_proj.{i}.{r}", "model.conv_encoder.encoder_input_proj.{i}.{r}"),
    (_AIFI + "self_attn.out_proj.{t}", _AIFI_PORT + "self_attn.o_proj.{t}"),
    (_AIFI + "linear1.{t}", _AIFI_PORT + "mlp.layers.0.{t}"),
    (_AIFI + "linear2.{t}", _AIFI_PORT + "mlp.layers.1.{t}"),
    (_AIFI + "norm1.{t}", _AIFI_PORT + "self_attn_layer_norm.{t}"),
    (_AIFI + "norm2.{t}", _AIFI_PORT + "final_layer_norm.{t}"),
    ("encoder.lateral_convs.{r}", "model.encoder.lateral_convs.{r}"),
    ("encoder.downsample_convs.{i}.0.cv1.{r}", "model.encoder.downsample_convs.{i}.conv1.{r}"),
    ("encoder.downsample_convs.{i}.0.cv2.{r}", "model.encoder.downsample_convs.{i}.conv2.{r}"),
]
_HG = "model.conv_encoder.model."
_HGNET = [
    ("backbone.stem.{s}.conv.weight", _HG + "embedder.{s}.convolution.weight"),
    ("backbone.stem.{s}.bn.{t}", _HG + "embedder.{s}.normalization.{t}"),
    ("backbone.stem.{s}.lab.{t}", _HG + "embedder.{s}.lab.{t}"),
    ("backbone.stages.{r}.conv.weight", _HG + "encoder.stages.{r}.convolution.weight"),
    ("backbone.stages.{r}.bn.{t}", _HG + "encoder.stages.{r}.normalization.{t}"),
    ("backbone.stages.{r}.lab.{t}", _HG + "encoder.stages.{r}.lab.{t}"),
]
_VIT = "model.conv_encoder.backbone."
_STA = "model.conv_encoder.spatial_tuning_adapter."
_STA_RULES = [
    ("backbone.sta.stem.0.weight", _STA + "stem_conv.conv.weight"),
    ("backbone.sta.stem.1.{t}", _STA + "stem_conv.norm.{t}"),
    ("backbone.sta.conv2.0.weight", _STA + "conv2.conv.weight"),
    ("backbone.sta.conv2.1.{t}", _STA + "conv2.norm.{t}"),
    ("backbone.sta.conv{i}.1.weight", _STA + "conv{i}.conv.weight"),
    ("backbone.sta.conv{i}.2.{t}", _STA + "conv{i}.norm.{t}"),
    ("backbone.convs.{i}.weight", "model.conv_encoder.fusion_proj.{i}.conv.weight"),
    ("backbone.norms.{i}.{t}", "model.conv_encoder.fusion_proj.{i}.norm.{t}"),
]


def _vit_rules(p: str, dinov3: bool, gated: bool, q: str = _VIT) -> list[tuple[str, str]]:
    """ViT keys with official prefix ``p`` and Hugging Face prefix ``q`` (the port's; ``""`` for a bare
    ``DINOv3ViTModel``); ``dinov3`` adds registers, mask token, layer scale, final norm;
    ``gated``: SwiGLU MLP (w1, w2, w3) instead of fc1, fc2."""
    blk, lay = p + "blocks.{i}.", q + "model.layer.{i}."
    rules = [
        (p + "cls_token", q + "embeddings.cls_token"),
        (p + "patch_embed.proj.{t}", q + "embeddings.patch_embeddings.{t}"),
        (blk + "norm1.{t}", lay + "norm1.{t}"),
        (blk + "norm2.{t}", lay + "norm2.{t}"),
        (blk + "attn.proj.{t}", lay + "attention.o_proj.{t}"),
    ]
    if gated:
        rules += [
            (blk + "mlp.w1.{t}", lay + "mlp.gate_proj.{t}"),
            (blk + "mlp.w2.{t}", lay + "mlp.up_proj.{t}"),
            (blk + "mlp.w3.{t}", lay + "mlp.down_proj.{t}"),
        ]
    else:
        rules += [(blk + "mlp.fc1.{t}", lay + "mlp.up_proj.{t}"), (blk + "mlp.fc2.{t}", lay + "mlp.down_proj.{t}")]
    if dinov3:
        rules += [
            (p + "storage_tokens", q + "embeddings.register_tokens"),
            (p + "mask_token", q + "embeddings.mask_token"),
            (blk + "ls1.gamma", lay + "layer_scale1.lambda1"),
            (blk + "ls2.gamma", lay + "layer_scale2.lambda1"),
            (p + "norm.{t}", q + "norm.{t}"),
        ]
    return rules


def _vit_qkv(p: str, q: str = _VIT) -> list[tuple[str, tuple[str, ...]]]:
    """Fused ViT ``attn.qkv`` (official prefix ``p``) <-> separate q/k/v projections (HF prefix ``q``)."""
    return [(p + "blocks.{i}.attn.qkv." + t, _qkv(q + "model.layer.{i}.attention.", t)) for t in ("weight", "bias")]


def _qkv(prefix: str, leaf: str) -> tuple[str, ...]:
    return tuple(f"{prefix}{n}_proj.{leaf}" for n in "qkv")


def _fused(layout: str) -> list[tuple[str, tuple[str, ...]]]:
    """(official key, port parts): the official tensor is the port parts concatenated along dim 0."""
    fused = [
        (_AIFI + "self_attn.in_proj_weight", _qkv(_AIFI_PORT + "self_attn.", "weight")),
        (_AIFI + "self_attn.in_proj_bias", _qkv(_AIFI_PORT + "self_attn.", "bias")),
        ("decoder.decoder.layers.{i}.self_attn.in_proj_weight", _qkv("model.decoder.layers.{i}.self_attn.", "weight")),
        ("decoder.decoder.layers.{i}.self_attn.in_proj_bias", _qkv("model.decoder.layers.{i}.self_attn.", "bias")),
        (
            "decoder.decoder.layers.{i}.swish_ffn.w12.{t}",
            ("model.decoder.layers.{i}.mlp.gate_proj.{t}", "model.decoder.layers.{i}.mlp.up_proj.{t}"),
        ),
    ]
    if layout != "hgnet":
        fused += _vit_qkv(_VIT_PREFIX[layout])
    return fused


#: official prefix of the ViT inside DINOv3STAs: ViT-Tiny(+) (S/M) is wrapped once more than DINOv3 (L/X)
_VIT_PREFIX = {"vit_tiny": "backbone.dinov3._model.", "dinov3": "backbone.dinov3."}


def _rules(layout: str, lite: bool, gated: bool) -> _Rules:
    pairs = list(_DECODER) + list(_ELAN) + (_LITE if lite else _HYBRID)
    if layout == "hgnet":
        pairs += _HGNET
    else:
        pairs += _STA_RULES + _vit_rules(_VIT_PREFIX[layout], layout == "dinov3", gated)
    return _Rules(pairs)


# --------------------------------------------------------------------------- layouts
def _port_layout(sd: Mapping[str, Any]) -> tuple[str, bool, bool]:
    """(backbone layout 'hgnet' | 'vit_tiny' | 'dinov3', lite encoder?, gated ViT MLP?) of a port state dict."""
    if any(k.startswith(_HG) for k in sd):
        layout = "hgnet"
    else:
        regs = sd.get(_VIT + "embeddings.register_tokens")
        layout = "dinov3" if regs is not None and regs.shape[1] > 0 else "vit_tiny"
    gated = any(k.startswith(_VIT) and ".mlp.gate_proj." in k for k in sd)
    return layout, any(k.startswith("model.encoder.bi_fusion_conv.") for k in sd), gated


def _official_layout(sd: Mapping[str, Any]) -> tuple[str, bool, bool]:
    if any(k.startswith("backbone.stem.") for k in sd):
        layout = "hgnet"
    else:
        layout = "vit_tiny" if any(k.startswith(_VIT_PREFIX["vit_tiny"]) for k in sd) else "dinov3"
    gated = any(k.startswith("backbone.dinov3") and ".mlp.w1." in k for k in sd)
    return layout, any(k.startswith("encoder.bi_fusion.") for k in sd), gated


def _vit_head_dim(layout: str, width: int) -> int:
    """Attention head width of the ViT (64 in every DEIMv2 variant: 192/3, 256/4, 384/6)."""
    heads = DINOv3ViT.num_heads if layout == "dinov3" else {w: h for w, h in VIT_TINY_ARCHS.values()}[width]
    return width // heads


# --------------------------------------------------------------------------- Hugging Face side -> official
def _to_official(
    sd: Mapping[str, torch.Tensor], rules: _Rules, fused: list, masked_k_bias: bool, source: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Hugging Face keys -> official keys: q/k/v (and gate/up) parts concatenated, the rest renamed.

    A missing ``k_proj.bias`` (``key_bias=False``) reads as zeros; ``masked_k_bias`` (DINOv3) adds the
    official ``qkv.bias_mask``. Returns (official state dict, keys no rule knows).
    """
    out: dict[str, torch.Tensor] = {}
    claimed: set[str] = set()
    for off, parts in fused:
        first = _compile(parts[0])
        for key in sd:
            m = first.match(key)
            if not m:
                continue
            names = [_fill(p, m.groupdict()) for p in parts]
            claimed.update(n for n in names if n in sd)
            tensors = [sd.get(n) for n in names]
            if tensors[1] is None and names[1].endswith("k_proj.bias"):
                tensors[1] = torch.zeros_like(tensors[0])  # no key bias stored
            missing = [n for n, t in zip(names, tensors) if t is None]
            if missing:
                raise WeightsError(f"{source}缺少 {missing[0]}，文件不完整，请重新下载或重新保存。")
            off_key = _fill(off, m.groupdict())
            out[off_key] = torch.cat(tensors, dim=0)
            if masked_k_bias and off_key.endswith("qkv.bias"):
                n = tensors[0].shape[0]
                out[off_key[: -len("bias")] + "bias_mask"] = torch.cat([torch.ones(n), torch.zeros(n), torch.ones(n)])
    unknown = []
    for key, value in sd.items():
        if key in claimed:
            continue
        off = rules.to_official(key)
        if off is None:
            unknown.append(key)
            continue
        out[off] = value.reshape(1, -1) if off.endswith("mask_token") else value
    return out, unknown


def convert_hf_dinov3_to_meta(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face ``DINOv3ViTModel`` keys -> Meta DINOv3 keys (qkv fused, k bias masked to 0, RoPE periods)."""
    src = {k.removeprefix("model."): v for k, v in sd.items()}
    src = {("model." + k if k.startswith("layer.") else k): v for k, v in src.items()}
    gated = any(k.endswith("mlp.gate_proj.weight") for k in src)
    rules = _Rules(_vit_rules("", dinov3=True, gated=gated, q=""))
    out, unknown = _to_official(src, rules, _vit_qkv("", q=""), masked_k_bias=True, source="DINOv3 Hugging Face 权重")
    if unknown:
        raise WeightsError(
            f"DINOv3 Hugging Face 权重里有 {len(unknown)} 个无法识别的键（如 {unknown[:3]}）。"
            f"支持的是 facebook/dinov3-vits16 与 dinov3-vits16plus（DINOv3ViTModel）的权重。"
        )
    out["rope_embed.periods"] = rope_periods(_vit_head_dim("dinov3", out["cls_token"].shape[-1]), dtype=torch.float32)
    return out


def _check_identity(sd: Mapping[str, torch.Tensor]) -> None:
    """The official decoder has no ``enc_output``: only an identity Linear + default LayerNorm converts."""
    w, b = sd.get("model.enc_output.0.weight"), sd.get("model.enc_output.0.bias")
    g, beta = sd.get("model.enc_output.1.weight"), sd.get("model.enc_output.1.bias")
    if w is None:
        return
    ok = (
        torch.equal(w, torch.eye(w.shape[0], dtype=w.dtype)) and not b.any() and bool((g == 1).all()) and not beta.any()
    )
    if not ok:
        raise WeightsError(
            "这个 transformers 权重的 model.enc_output（Linear + LayerNorm）不是恒等映射，说明它在 transformers 里被训练过；"
            "官方 DEIMv2 结构没有这一层，无法无损转换。请使用官方/本项目训练的 checkpoint，或在 transformers 中继续使用该权重。"
        )


def _port_only(key: str, value: torch.Tensor, layout: str) -> bool:
    """Port tensors with no official counterpart (checked where a value would change the outputs)."""
    if key.startswith("model.enc_output."):
        return True
    if layout != "vit_tiny":
        return False
    if key in (_VIT + "embeddings.mask_token", _VIT + "embeddings.register_tokens") or key.startswith(_VIT + "norm."):
        return True  # the official ViT-Tiny has no mask token, no registers and no final norm
    if re.fullmatch(re.escape(_VIT) + r"model\.layer\.\d+\.layer_scale[12]\.lambda1", key):
        if not bool((value == 1).all()):
            raise WeightsError(
                f"{key} 不全为 1：ViT-Tiny 骨干（DEIMv2-S/M）没有 layer scale，这个 transformers 权重无法无损转换。"
            )
        return True
    return False


def convert_transformers_port(
    sd: Mapping[str, torch.Tensor], eval_size: Iterable[int] | None = None
) -> dict[str, torch.Tensor]:
    """``Deimv2ForObjectDetection`` state dict -> official DEIMv2 state dict (loads with strict=True).

    ``eval_size`` (h, w) sets the shape of ``decoder.anchors``; default: the variant's official size.
    Raises :class:`WeightsError` for keys it does not know or port tensors the official model cannot hold.
    """
    layout, lite, gated = _port_layout(sd)
    heads = ("class_embed.", "bbox_embed.")
    # top-level head copies first, so the decoder's own (the ones its forward uses) win
    src = {"model.decoder." + k: v for k, v in sd.items() if k.startswith(heads)}
    src.update({k: v for k, v in sd.items() if not k.startswith(heads)})
    src = {k: v for k, v in src.items() if not _port_only(k, v, layout)}
    out, unknown = _to_official(
        src, _rules(layout, lite, gated), _fused(layout), masked_k_bias=layout == "dinov3", source="transformers 权重"
    )
    if unknown:
        raise WeightsError(
            f"transformers 权重里有 {len(unknown)} 个无法识别的键（如 {unknown[:3]}）。"
            f"支持的是 transformers 的 Deimv2ForObjectDetection（DEIMv2 八个官方变体）。"
        )
    _check_identity(sd)
    _complete_official(out, layout, eval_size)
    return out


@cache
def _variant_geometry(variant: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(eval_spatial_size, decoder strides of every level) of an official variant."""
    cfg = load_config(variant)
    strides = list(cfg.model.decoder.get("feat_strides", [8, 16, 32]))
    levels = int(cfg.model.decoder.get("num_levels", len(strides)))
    while len(strides) < levels:  # extra levels as DEIMTransformer adds them
        strides.append(strides[-1] * 2)
    return tuple(cfg.eval_spatial_size), tuple(strides)


def _complete_official(out: dict[str, torch.Tensor], layout: str, eval_size: Iterable[int] | None) -> None:
    """Add official tensors the port does not store (all derived, none learned)."""
    for k in ("up", "reg_scale"):
        if f"decoder.decoder.{k}" in out:
            out[f"decoder.{k}"] = out[f"decoder.decoder.{k}"]
    # shared bbox heads: save_pretrained keeps one copy of tied tensors
    n_layers = len({k.split(".")[3] for k in out if k.startswith("decoder.decoder.layers.")})
    present = sorted({int(k.split(".")[2]) for k in out if k.startswith("decoder.dec_bbox_head.")})
    if present:
        src = f"decoder.dec_bbox_head.{present[0]}."
        for i in range(n_layers):
            if i not in present:
                for k in [k for k in out if k.startswith(src)]:
                    out[f"decoder.dec_bbox_head.{i}." + k[len(src) :]] = out[k]
    for k in [k for k in out if k.endswith(".running_mean")]:
        out.setdefault(k[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0, dtype=torch.long))
    if layout != "hgnet":
        p = _VIT_PREFIX[layout]
        head_dim = _vit_head_dim(layout, out[p + "cls_token"].shape[-1])
        out[p + "rope_embed.periods"] = rope_periods(head_dim, dtype=torch.float32)
    variant = variant_of_state_dict(out)
    if variant is not None:
        size, strides = _variant_geometry(variant)
        anchors, valid = make_anchors(feature_shapes(list(eval_size) if eval_size is not None else size, strides))
        out["decoder.anchors"], out["decoder.valid_mask"] = anchors, valid


# --------------------------------------------------------------------------- official -> port
def to_transformers_port(sd: Mapping[str, torch.Tensor], variant_or_cfg: Any = None) -> dict[str, torch.Tensor]:
    """Official (or this package's) state dict -> ``Deimv2ForObjectDetection`` state dict, tied copies included.

    Every tensor is a fresh copy (so the dict can go straight to ``safetensors.torch.save_file``).
    ``variant_or_cfg`` (variant name or :class:`deimv2.config.loader.Config`), when given, must match ``sd``.
    """
    if variant_or_cfg is not None:
        want = _variant_name(variant_or_cfg)
        got = variant_of_state_dict(sd)
        if got != want:
            raise WeightsError(f"state_dict 是 DEIMv2-{str(got).upper()} 的权重，但要求转换为 DEIMv2-{want.upper()}。")
    layout, lite, gated = _official_layout(sd)
    rules = _rules(layout, lite, gated)
    out: dict[str, torch.Tensor] = {}
    claimed: set[str] = set()
    for off, parts in _fused(layout):
        pattern = _compile(off)
        for key, value in sd.items():
            m = pattern.match(key)
            if not m:
                continue
            claimed.add(key)
            names = [_fill(p, m.groupdict()) for p in parts]
            chunks = list(value.chunk(len(parts), dim=0))
            mask = sd.get(key + "_mask") if key.endswith("qkv.bias") else None
            if mask is not None:  # DINOv3: the masked key bias is zero in effect
                chunks = list((value * mask).chunk(3, dim=0))
            out.update({n: c.clone() for n, c in zip(names, chunks)})
    derived = ("decoder.anchors", "decoder.valid_mask", "decoder.up", "decoder.reg_scale")
    unknown = []
    for key, value in sd.items():
        if key in claimed or key in derived or key.endswith(("rope_embed.periods", "qkv.bias_mask")):
            continue
        if layout == "hgnet" and key.startswith("backbone.") and key.endswith("num_batches_tracked"):
            continue  # the port freezes the backbone's BatchNorm (no counter)
        port = rules.to_port(key)
        if port is None:
            unknown.append(key)
            continue
        out[port] = value.reshape(1, 1, -1).clone() if key.endswith("mask_token") else value.clone()
    if unknown:
        raise WeightsError(f"无法转换为 transformers 格式的键：{unknown[:3]}（共 {len(unknown)} 个）。")
    _complete_port(out, layout)
    return out


def _variant_name(variant_or_cfg: str | Config) -> str:
    if isinstance(variant_or_cfg, str):
        return variant_or_cfg
    variant = variant_of_config_name(getattr(variant_or_cfg, "name", None) or "")
    if variant is None:
        raise WeightsError(
            f"无法从 {variant_or_cfg!r} 得知 DEIMv2 变体，请直接传入变体名（atto/femto/pico/n/s/m/l/x）。"
        )
    return variant


def _complete_port(out: dict[str, torch.Tensor], layout: str) -> None:
    """Add port tensors the official model does not have (identity enc_output, ViT-Tiny extras, head copies)."""
    d = out["model.denoising_class_embed.weight"].shape[1]
    out["model.enc_output.0.weight"] = torch.eye(d)
    out["model.enc_output.0.bias"] = torch.zeros(d)
    out["model.enc_output.1.weight"] = torch.ones(d)
    out["model.enc_output.1.bias"] = torch.zeros(d)
    if layout == "vit_tiny":
        dim = out[_VIT + "embeddings.cls_token"].shape[-1]
        out[_VIT + "embeddings.mask_token"] = torch.zeros(1, 1, dim)
        out[_VIT + "embeddings.register_tokens"] = torch.zeros(1, 0, dim)
        out[_VIT + "norm.weight"], out[_VIT + "norm.bias"] = torch.ones(dim), torch.zeros(dim)
        depth = len({k.split(".")[5] for k in out if k.startswith(_VIT + "model.layer.")})
        for i in range(depth):
            for n in (1, 2):
                out[f"{_VIT}model.layer.{i}.layer_scale{n}.lambda1"] = torch.ones(dim)
    for k in [k for k in out if k.startswith(("model.decoder.class_embed.", "model.decoder.bbox_embed."))]:
        out[k[len("model.decoder.") :]] = out[k].clone()
