"""The Hugging Face transformers port of DEIMv2 (``Deimv2ForObjectDetection``, transformers >= 5) <-> official keys.

transformers is never imported: only key names and tensors are translated, so users can load a port
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
from typing import Any

import torch

from .errors import WeightsError

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


def _vit_rules(p: str, dinov3: bool, gated: bool) -> list[tuple[str, str]]:
    """ViT keys with official prefix ``p``; ``dinov3`` adds registers, mask token, layer scale, final norm;
    ``gated``: SwiGLU MLP (w1, w2, w3) instead of fc1, fc2."""
    blk, lay = p + "blocks.{i}.", _VIT + "model.layer.{i}."
    rules = [
        (p + "cls_token", _VIT + "embeddings.cls_token"),
        (p + "patch_embed.proj.{t}", _VIT + "embeddings.patch_embeddings.{t}"),
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
            (p + "storage_tokens", _VIT + "embeddings.register_tokens"),
            (p + "mask_token", _VIT + "embeddings.mask_token"),
            (blk + "ls1.gamma", lay + "layer_scale1.lambda1"),
            (blk + "ls2.gamma", lay + "layer_scale2.lambda1"),
            (p + "norm.{t}", _VIT + "norm.{t}"),
        ]
    return rules


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
        blk = _VIT_PREFIX[layout] + "blocks.{i}.attn.qkv."
        fused += [(blk + t, _qkv(_VIT + "model.layer.{i}.attention.", t)) for t in ("weight", "bias")]
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


# --------------------------------------------------------------------------- detection
def is_transformers_port(sd: Mapping[str, Any]) -> bool:
    """True for a ``Deimv2ForObjectDetection`` state dict (``model.conv_encoder.*`` + ``model.decoder.*``)."""
    keys = list(sd)
    return any(k.startswith("model.conv_encoder.") for k in keys) and any(k.startswith("model.decoder.") for k in keys)


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


# --------------------------------------------------------------------------- official tensors the port lacks
def rope_periods(head_dim: int = 64, base: float = 100.0) -> torch.Tensor:
    """DINOv3 RoPE periods ``base ** (2 k / (D/2))``, k < D/4 (``rope_embed.periods``)."""
    quarter = head_dim // 4
    return base ** (2 * torch.arange(quarter, dtype=torch.float32) / (2 * quarter))


def make_anchors(
    eval_size: Iterable[int], strides: Iterable[int], grid_size: float = 0.05, eps: float = 1e-2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Official ``decoder.anchors`` ``[1, N, 4]`` (logits of cell centre and size; inf where invalid) and
    ``decoder.valid_mask`` ``[1, N, 1]`` for an ``eval_size`` (h, w) and per-level ``strides``."""
    h_img, w_img = eval_size
    per_level = []
    for lvl, s in enumerate(strides):
        h, w = int(h_img / s), int(w_img / s)
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
        )
        centre = torch.stack([(xs + 0.5) / w, (ys + 0.5) / h], dim=-1).reshape(-1, 2)
        size = torch.full_like(centre, grid_size * 2.0**lvl)
        per_level.append(torch.cat([centre, size], dim=-1))
    boxes = torch.cat(per_level).unsqueeze(0)
    valid = ((boxes > eps) & (boxes < 1 - eps)).all(-1, keepdim=True)
    anchors = torch.where(valid, torch.log(boxes / (1 - boxes)), torch.inf)
    return anchors, valid


def _variant_geometry(variant: str) -> tuple[list[int], list[int]]:
    """(eval_spatial_size, decoder feat_strides) of an official variant."""
    from .config import load_config

    cfg = load_config(variant)
    strides = list(cfg.model.decoder.get("feat_strides", [8, 16, 32]))
    levels = int(cfg.model.decoder.get("num_levels", len(strides)))
    while len(strides) < levels:
        strides.append(strides[-1] * 2)
    return list(cfg.eval_spatial_size), strides


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


# --------------------------------------------------------------------------- port -> official
def convert_transformers_port(
    sd: Mapping[str, torch.Tensor], eval_size: Iterable[int] | None = None
) -> dict[str, torch.Tensor]:
    """``Deimv2ForObjectDetection`` state dict -> official DEIMv2 state dict (loads with strict=True).

    ``eval_size`` (h, w) sets the shape of ``decoder.anchors``; default: the variant's official size.
    Raises :class:`WeightsError` for keys it does not know or port tensors the official model cannot hold.
    """
    layout, lite, gated = _port_layout(sd)
    rules = _rules(layout, lite, gated)
    # top-level head copies first, so the decoder's own (the ones its forward uses) win
    items = sorted(sd.items(), key=lambda kv: not kv[0].startswith(("class_embed.", "bbox_embed.")))
    out: dict[str, torch.Tensor] = {}
    claimed: set[str] = set()
    for off, parts in _fused(layout):
        first = _compile(parts[0])
        for key in sd:
            m = first.match(key)
            if not m:
                continue
            names = [_fill(p, m.groupdict()) for p in parts]
            claimed.update(n for n in names if n in sd)
            tensors = [sd.get(n) for n in names]
            if tensors[1] is None and names[1].endswith("k_proj.bias"):
                tensors[1] = torch.zeros_like(tensors[0])  # port config key_bias=False: no key bias
            missing = [n for n, t in zip(names, tensors) if t is None]
            if missing:
                raise WeightsError(f"transformers 权重缺少 {missing[0]}，文件不完整，请重新下载或重新保存。")
            off_key = _fill(off, m.groupdict())
            out[off_key] = torch.cat(tensors, dim=0)
            if layout == "dinov3" and off_key.endswith("qkv.bias"):
                n = tensors[0].shape[0]
                out[off_key[: -len("bias")] + "bias_mask"] = torch.cat([torch.ones(n), torch.zeros(n), torch.ones(n)])
    unknown = []
    for key, value in items:
        if key in claimed or _port_only(key, value, layout):
            continue
        name = "model.decoder." + key if key.startswith(("class_embed.", "bbox_embed.")) else key
        off = rules.to_official(name)
        if off is None:
            unknown.append(key)
            continue
        out[off] = value.reshape(1, -1) if off.endswith("mask_token") else value
    if unknown:
        raise WeightsError(
            f"transformers 权重里有 {len(unknown)} 个无法识别的键（如 {unknown[:3]}）。"
            f"支持的是 transformers 的 Deimv2ForObjectDetection（DEIMv2 八个官方变体）。"
        )
    _check_identity(sd)
    _complete_official(out, layout, eval_size)
    return out


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


def _complete_official(out: dict[str, torch.Tensor], layout: str, eval_size: Iterable[int] | None) -> None:
    """Add official tensors the port does not store (all derived, none learned)."""
    from .weights import variant_of_state_dict

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
        head_dim = 64  # every DEIMv2 ViT: 192/3, 256/4, 384/6
        out[_VIT_PREFIX[layout] + "rope_embed.periods"] = rope_periods(head_dim)
    variant = variant_of_state_dict(out)
    if variant is not None:
        size, strides = _variant_geometry(variant)
        anchors, valid = make_anchors(list(eval_size) if eval_size is not None else size, strides)
        out["decoder.anchors"], out["decoder.valid_mask"] = anchors, valid


# --------------------------------------------------------------------------- official -> port
def to_transformers_port(sd: Mapping[str, torch.Tensor], variant_or_cfg: Any = None) -> dict[str, torch.Tensor]:
    """Official (or this package's) state dict -> ``Deimv2ForObjectDetection`` state dict, tied copies included.

    Every tensor is a fresh copy (so the dict can go straight to ``safetensors.torch.save_file``).
    ``variant_or_cfg`` (variant name or :class:`deimv2.config.Config`), when given, must match ``sd``.
    """
    from .weights import variant_of_state_dict

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


def _variant_name(variant_or_cfg: Any) -> str:
    if isinstance(variant_or_cfg, str):
        return variant_or_cfg
    from .config import VARIANTS

    name = getattr(variant_or_cfg, "name", None)
    inverse = {v: k for k, v in VARIANTS.items()}
    if name in inverse or name in VARIANTS:
        return inverse.get(name, name)
    raise WeightsError(f"无法从 {variant_or_cfg!r} 得知 DEIMv2 变体，请直接传入变体名（atto/femto/pico/n/s/m/l/x）。")


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


# --------------------------------------------------------------------------- configs
#: variant -> (backbone model_type, d_model, encoder_type, decoder_layers) of the port's config
_PORT_SIGNATURE = {
    "atto": ("hgnet_v2", 64, "lite", 3),
    "femto": ("hgnet_v2", 96, "lite", 3),
    "pico": ("hgnet_v2", 112, "lite", 3),
    "n": ("hgnet_v2", 128, "hybrid", 3),
    "s": ("dinov3_vit", 192, "hybrid", 4),
    "m": ("dinov3_vit", 256, "hybrid", 4),
    "l": ("dinov3_vit", 224, "hybrid", 4),
    "x": ("dinov3_vit", 256, "hybrid", 6),
}
_HGNET_D_MODEL = {64: "atto", 96: "femto", 112: "pico", 128: "n"}


def port_config_to_variant(config_json: Mapping[str, Any]) -> str | None:
    """Which official variant a transformers ``config.json`` (``Deimv2Config``) describes; None if none."""
    if config_json.get("model_type", "deimv2") != "deimv2":
        return None
    bb = config_json.get("backbone_config") or {}
    kind = bb.get("model_type", "hgnet_v2")
    d_model = config_json.get("d_model", 256)
    if kind == "hgnet_v2":
        variant = _HGNET_D_MODEL.get(d_model)
    elif kind == "dinov3_vit":
        width = bb.get("hidden_size", 384)
        variant = {192: "s", 256: "m"}.get(width) or (
            ("x" if bb.get("use_gated_mlp") else "l") if width == 384 else None
        )
    else:
        return None
    if variant is None:
        return None
    got = (kind, d_model, config_json.get("encoder_type", "hybrid"), config_json.get("decoder_layers", 6))
    return variant if got == _PORT_SIGNATURE[variant] else None


#: HGNetv2 stage tables (official ``arch_configs``) in the port's HGNetV2Config fields
_HGNET_STAGES = {
    "Atto": ([64, 256, 256], [1, 1, 1], [3, 3, 3]),
    "Femto": ([64, 256, 512], [1, 1, 1], [3, 3, 5]),
    "Pico": ([64, 256, 512], [1, 1, 2], [3, 3, 5]),
    "B0": ([64, 256, 512, 1024], [1, 1, 2, 1], [3, 3, 5, 5]),
}
#: DINOv3STAs backbone name -> (width, heads, gated MLP, layer scale init, registers, is DINOv3)
_VIT_PRESETS = {
    "vit_tiny": (192, 3, False, 1.0, 0, False),
    "vit_tinyplus": (256, 4, False, 1.0, 0, False),
    "dinov3_vits16": (384, 6, False, 1e-5, 4, True),
    "dinov3_vits16plus": (384, 6, True, 1e-5, 4, True),
}


def port_config_for_variant(variant: str, num_classes: int = 80) -> dict[str, Any]:
    """``Deimv2Config`` keyword arguments (JSON-able) equal to an official variant's architecture.

    ``anchor_image_size`` and ``eval_size`` stay None: the port then makes anchors from the real feature
    sizes (its fixed anchors use the encoder strides, one level short for Atto/Femto/Pico) and keeps the
    AIFI position embedding in eval mode (with ``eval_size`` set the port drops it, the official model does not).
    ``key_bias=True`` for every ViT: ViT-Tiny's key bias changes the outputs (RoPE), DINOv3's is zero.
    """
    from .config import load_config

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
        outs, blocks, kernels = _HGNET_STAGES[bb["name"]]
        n = len(outs)
        c["backbone_config"] = dict(
            model_type="hgnet_v2",
            stem_channels=[3, 16, 16],
            hidden_sizes=outs,
            stage_in_channels=[16] + outs[:-1],
            stage_mid_channels=[16, 32, 64, 128][:n],
            stage_out_channels=outs,
            stage_num_blocks=blocks,
            stage_downsample=[False] + [True] * (n - 1),
            stage_light_block=[False, False] + [True] * (n - 2),
            stage_kernel_size=kernels,
            stage_numb_of_layers=[3] * n,
            depths=[3] * n,
            use_learnable_affine_block=bool(bb.get("use_lab", True)),
            out_indices=[i + 1 for i in bb["return_idx"]],
            stage_names=["stem"] + [f"stage{i}" for i in range(1, n + 1)],
        )
        c["encoder_has_trailing_conv"] = True
    else:
        width, heads, gated, ls, regs, is_dinov3 = _VIT_PRESETS[bb["name"]]
        inter = width * 4
        if gated:  # SwiGLU hidden size of DINOv3 ViT-S+/16: 2/3 of 6x width, rounded up to 8
            inter = int(width * 6 * 2 / 3)
            inter += -inter % 8
        c["backbone_config"] = dict(
            model_type="dinov3_vit",
            hidden_size=width,
            num_attention_heads=heads,
            num_hidden_layers=12,
            intermediate_size=inter,
            layerscale_value=ls,
            use_gated_mlp=gated,
            num_register_tokens=regs,
            pos_embed_rescale=2.0 if is_dinov3 else None,
            key_bias=True,
            rope_theta=100.0,
            layer_norm_eps=1e-5 if is_dinov3 else 1e-6,
            hidden_act="silu" if gated else "gelu",
            out_indices=[i + 1 for i in bb["interaction_indexes"]],
            apply_layernorm=is_dinov3,
            reshape_hidden_states=True,
        )
        c["encoder_has_trailing_conv"] = False
        c["spatial_tuning_adapter_inplanes"] = bb.get("conv_inplane") or 16
    return c
