"""Typed, documented sections of a DEIMv2 config (HF-configuration style; plain data, no torch).

Each field states what it does, its unit and its default (the official one) in one place: the field's
``metadata["doc"]`` and its default. Model sections (:class:`HGNetv2Config` ... :class:`PostProcessorConfig`)
mirror the official YAML sections of the same name key for key; :func:`section_from_mapping` refuses a key a
section does not have (Chinese error naming the key, the section and the file). Training sections read their
values from dotted official keys (``metadata["key"]``). :mod:`deimv2.config.loader` assembles them into ``Config``;
:func:`field_docs` lists them (notebook ``03_config.ipynb``).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any

from deimv2.errors import ConfigError

__all__ = [
    "CriterionConfig",
    "get_dotted",
    "DEIMTransformerConfig",
    "DINOv3STAsConfig",
    "DataConfig",
    "HGNetv2Config",
    "HybridEncoderConfig",
    "MODEL_SECTIONS",
    "STRICT_SECTIONS",
    "LiteEncoderConfig",
    "MatcherConfig",
    "ModelConfig",
    "OptimizerConfig",
    "PostProcessorConfig",
    "ScheduleConfig",
    "TrainConfig",
    "default_of",
    "field_docs",
    "section_from_keys",
    "section_from_mapping",
    "set_dotted",
]

#: keys an official YAML section may carry that are no field (the official registry's class name)
IGNORED_KEYS = ("type",)


def param(default: Any = MISSING, doc: str = "", *, key: str | None = None) -> Any:
    """A documented dataclass field; ``key``: the dotted official YAML key it is read from (default: its name)."""
    meta = {"doc": doc, "key": key}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


#: backbone keys naming pretrained weight files: read by deimv2.weights, never passed to a constructor
WEIGHT_FILE_KEYS = frozenset({"pretrained", "local_model_dir", "weights_path"})


class Section:
    """Shared behaviour of the sections: read access by YAML key for code written against the dict sections
    (``section["name"]``, ``section.get("name")``) and :meth:`kwargs` for the constructor call."""

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.keys() else default

    def keys(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self))

    def kwargs(self) -> dict[str, Any]:
        """Every field as a constructor keyword argument (deep copies), except the weight-file keys."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name not in WEIGHT_FILE_KEYS}


# --------------------------------------------------------------------------- model sections
@dataclass(frozen=True)
class HGNetv2Config(Section):
    """``HGNetv2``: the CNN backbone of DEIMv2-Atto/Femto/Pico/N (PP-HGNetV2). Notebook 07 §1."""

    name: str = param(doc="Architecture: Atto, Femto, Pico (DEIMv2's pruned ones) or B0…B6. Required.")
    use_lab: bool = param(False, "Learnable affine block after each activation (off in every DEIMv2 variant).")
    return_idx: list = param([1, 2, 3], "Stages whose maps are returned (0..3 = stride 4/8/16/32).")
    freeze_stem_only: bool = param(True, "With freeze_at >= 0: freeze only the stem, not the first stages.")
    freeze_at: int = param(0, "Freeze the stem (and stages 0..freeze_at unless freeze_stem_only); -1 = none.")
    freeze_norm: bool = param(True, "Replace BatchNorm by frozen BatchNorm (fixed statistics and affine).")
    pretrained: bool = param(
        False,
        "Load the ImageNet stage-1 weights from local_model_dir; ignored by build_model, which always builds "
        "random weights (load them with deimv2.weights).",
    )
    local_model_dir: str | None = param(None, "Folder of the PP-HGNetV2 ImageNet files (official key; path).")
    act: str = param("relu", "Activation of the conv blocks.")


@dataclass(frozen=True)
class DINOv3STAsConfig(Section):
    """``DINOv3STAs``: the ViT backbone of DEIMv2-S/M/L/X plus the Spatial Tuning Adapter. Notebook 07 §3."""

    name: str = param(doc="ViT: vit_tiny, vit_tinyplus (distilled, S/M) or dinov3_vits16(plus) (L/X). Required.")
    weights_path: str | None = param(
        None, "Backbone weights file (path); read by deimv2.weights, never by build_model. null = random."
    )
    interaction_indexes: list = param([], "ViT blocks whose tokens become the 3 maps (3 indices, or 1 shared).")
    finetune: bool = param(True, "Train the ViT; false freezes it.")
    embed_dim: int = param(192, "Token width of the vit_tiny family (channels); DINOv3 ViTs fix their own.")
    num_heads: int = param(3, "Attention heads of the vit_tiny family; DINOv3 ViTs fix their own.")
    patch_size: int = param(16, "ViT patch side (pixels); only 16 is supported.")
    use_sta: bool = param(True, "Add the Spatial Tuning Adapter (a small CNN giving fine detail at stride 8).")
    conv_inplane: int = param(16, "Base width of the adapter CNN (channels).")
    hidden_dim: int | None = param(None, "Channels of the 3 output maps; null = the ViT width.")


@dataclass(frozen=True)
class HybridEncoderConfig(Section):
    """``HybridEncoder``: AIFI self-attention on the coarsest map + CCFF top-down/bottom-up fusion. Notebook 07 §2."""

    in_channels: list = param([512, 1024, 2048], "Channels of each backbone map (one per level).")
    feat_strides: list = param([8, 16, 32], "Stride of each backbone map (pixels).")
    hidden_dim: int = param(256, "Width of every encoder output map (channels).")
    nhead: int = param(8, "Attention heads of the AIFI layer.")
    dim_feedforward: int = param(1024, "Hidden width of the AIFI feed-forward network (channels).")
    dropout: float = param(0.0, "Dropout probability inside AIFI.")
    enc_act: str = param("gelu", "Activation of the AIFI feed-forward network.")
    use_encoder_idx: list = param([2], "Which input maps get AIFI self-attention (indices into in_channels).")
    num_encoder_layers: int = param(1, "AIFI layers per selected map.")
    pe_temperature: float = param(10000, "Temperature of the 2-D sine-cosine position embedding.")
    expansion: float = param(
        1.0, "Width multiplier of the fusion blocks: their inner width is round(expansion * hidden_dim / 2)."
    )
    depth_mult: float = param(1.0, "Depth multiplier of the fusion blocks: round(3 * depth_mult) conv units each.")
    act: str = param("silu", "Activation of the convolutions.")
    eval_spatial_size: list | None = param(
        None, "[height, width] (pixels) for precomputed position embeddings; null = the top-level eval_spatial_size."
    )
    version: str = param("dfine", "Fusion block: 'dfine' (RepNCSPELAN4, DEIMv2-N) or 'deim' (RepNCSPELAN5, S…X).")
    csp_type: str = param("csp2", "CSP unit inside the fusion blocks: 'csp2' (the only kind DEIMv2 builds) or 'csp'.")
    fuse_op: str = param("cat", "How two levels are joined before fusion: 'cat' (concatenate channels) or 'sum'.")


@dataclass(frozen=True)
class LiteEncoderConfig(Section):
    """``LiteEncoder``: the convolution-only encoder of DEIMv2-Atto/Femto/Pico (one map in, two out). Notebook 07 §2."""

    in_channels: list = param([512], "Channels of the single backbone map (stride 16).")
    feat_strides: list = param([16], "Stride of that map (pixels); the second output has twice this stride.")
    hidden_dim: int = param(256, "Width of both output maps (channels).")
    expansion: float = param(1.0, "Width multiplier of the fusion block's inner layers.")
    depth_mult: float = param(1.0, "Depth multiplier of the fusion block: round(3 * depth_mult) conv units.")
    act: str = param("silu", "Activation of the convolutions.")
    eval_spatial_size: list | None = param(
        None, "[height, width] (pixels); accepted for config compatibility and unused, as official."
    )
    csp_type: str = param("csp2", "CSP unit inside the fusion block: 'csp2' or 'csp'.")


@dataclass(frozen=True)
class DEIMTransformerConfig(Section):
    """``DEIMTransformer``: the DETR decoder with fine-grained distribution refinement (FDR). Notebook 08.

    The defaults are the official ones; ``DEIMTransformer`` takes its defaults from here."""

    hidden_dim: int = param(256, "Width of queries and attention (channels).")
    num_queries: int = param(300, "Object queries, i.e. the most boxes one image can get.")
    feat_channels: list = param([512, 1024, 2048], "Channels of each encoder map.")
    feat_strides: list = param([8, 16, 32], "Stride of each encoder map (pixels); extra levels double the last.")
    num_levels: int = param(3, "Feature levels the deformable attention samples.")
    num_points: Any = param(4, "Sampling points per head and level (one int, or a list with one per level).")
    nhead: int = param(8, "Attention heads.")
    num_layers: int = param(6, "Decoder layers.")
    dim_feedforward: int = param(1024, "Hidden width of each layer's feed-forward network (channels).")
    dropout: float = param(0.0, "Dropout probability.")
    activation: str = param("relu", "Activation of the feed-forward networks and the LQE head.")
    num_denoising: int = param(100, "Denoising queries in training (noised ground-truth boxes); 0 = off.")
    label_noise_ratio: float = param(0.5, "Fraction of denoising labels replaced by a random class.")
    box_noise_scale: float = param(1.0, "Scale of the box noise of denoising queries (relative to box size).")
    learn_query_content: bool = param(False, "Learned query content instead of the selected encoder features.")
    eval_spatial_size: list | None = param(
        None, "[height, width] (pixels) for precomputed anchors; null = the top-level eval_spatial_size."
    )
    eval_idx: int = param(-1, "Layer whose output is returned at inference (-1 = the last).")
    eps: float = param(1e-2, "Margin of valid anchors: anchors with a coordinate outside (eps, 1 - eps) are masked.")
    aux_loss: bool = param(True, "Return every layer's outputs in training (deep supervision).")
    cross_attn_method: str = param(
        "default", "Deformable attention sampling: 'default' (bilinear) or 'discrete' (nearest cell)."
    )
    query_select_method: str = param("default", "Top-k query selection: 'default', 'one2many' or 'agnostic'.")
    reg_max: int = param(32, "Bins of each box-edge distribution (FDR).")
    reg_scale: float = param(4.0, "Range of the FDR weighting function (larger = wider offsets).")
    layer_scale: int = param(
        1, "Official width multiplier of layers after eval_idx; only 1 is supported (all DEIMv2 configs)."
    )
    mlp_act: str = param("relu", "Activation of the box and query-position MLPs.")
    use_gateway: bool = param(
        True, "Cross-attention residual through a learned gate, else residual + norm (off for Atto/Femto/Pico)."
    )
    share_bbox_head: bool = param(False, "One box head shared by the layers up to eval_idx.")
    share_score_head: bool = param(False, "One class head shared by the layers up to eval_idx.")


@dataclass(frozen=True)
class PostProcessorConfig(Section):
    """``PostProcessor``: top-k over queries × classes, no NMS. Notebook 06."""

    num_top_queries: int = param(300, "Boxes kept per image (top-k of queries × classes).")


MODEL_SECTIONS: dict[str, type] = {
    "HGNetv2": HGNetv2Config,
    "DINOv3STAs": DINOv3STAsConfig,
    "HybridEncoder": HybridEncoderConfig,
    "LiteEncoder": LiteEncoderConfig,
    "DEIMTransformer": DEIMTransformerConfig,
    "PostProcessor": PostProcessorConfig,
}


@dataclass(frozen=True)
class ModelConfig(Section):
    """The ``DEIM`` section (which backbone/encoder) and the model sections it names."""

    backbone_type: str = param("HGNetv2", "Backbone section: HGNetv2 or DINOv3STAs.", key="DEIM.backbone")
    backbone: HGNetv2Config | DINOv3STAsConfig | None = param(None, "The backbone section (typed).")
    encoder_type: str = param("HybridEncoder", "Encoder section: HybridEncoder or LiteEncoder.", key="DEIM.encoder")
    encoder: HybridEncoderConfig | LiteEncoderConfig | None = param(None, "The encoder section (typed).")
    decoder: DEIMTransformerConfig | None = param(None, "The DEIMTransformer section (typed).")
    postprocessor: PostProcessorConfig = param(PostProcessorConfig(), "The PostProcessor section (typed).")


# --------------------------------------------------------------------------- loss sections
@dataclass(frozen=True)
class MatcherConfig(Section):
    """``DEIMCriterion.matcher``: the Hungarian matcher (costs and its late switch). Notebook 09 §2.

    The defaults are the official ``configs/base/deimv2.yml``; ``HungarianMatcher`` takes its defaults from here."""

    weight_dict: dict = param({"cost_class": 2, "cost_bbox": 5, "cost_giou": 2}, "Weight of each matching cost.")
    alpha: float = param(0.25, "Focal-cost alpha of the class cost.")
    gamma: float = param(2.0, "Focal-cost gamma of the class cost.")
    change_matcher: bool = param(True, "Switch to the IoU-ordered cost at matcher_change_epoch.")
    iou_order_alpha: float = param(4.0, "Exponent of the IoU term of the switched cost.")
    matcher_change_epoch: int = param(45, "Epoch (0-based) at which the matcher switches.")


@dataclass(frozen=True)
class CriterionConfig(Section):
    """``DEIMCriterion``: MAL class loss + L1/GIoU box losses (+ FGL/DDF localisation losses). Notebook 09.

    The defaults are the official ``configs/base/deimv2.yml`` (Atto/Femto/Pico change ``losses``, ``use_uni_set``
    and the matcher's epoch); ``DEIMCriterion`` and ``build_criterion`` take their defaults from here."""

    weight_dict: dict = param(
        {"loss_mal": 1, "loss_bbox": 5, "loss_giou": 2, "loss_fgl": 0.15, "loss_ddf": 1.5},
        "Weight of each loss term (loss_mal, loss_bbox, loss_giou, loss_fgl, loss_ddf).",
    )
    losses: list = param(["mal", "boxes", "local"], "Loss groups: mal (class), boxes (L1 + GIoU), local (FGL + DDF).")
    matcher: MatcherConfig = param(MatcherConfig(), "The Hungarian matcher.")
    gamma: float = param(1.5, "Exponent of the matchability-aware loss (MAL).")
    alpha: float = param(0.75, "Weight of negatives in MAL.")
    reg_max: int = param(32, "Bins of each box-edge distribution (must equal the decoder's).")
    use_uni_set: bool = param(True, "Localisation losses on the union of the layers' matches (off for Atto…Pico).")


#: every section read key for key by :func:`section_from_mapping` (dotted name -> class)
STRICT_SECTIONS: dict[str, type] = {
    **MODEL_SECTIONS,
    "DEIMCriterion": CriterionConfig,
    "DEIMCriterion.matcher": MatcherConfig,
}


# --------------------------------------------------------------------------- training sections
@dataclass(frozen=True)
class OptimizerConfig(Section):
    """``optimizer``: AdamW with per-group learning rates. Notebook 03 (optimizer)."""

    lr: float = param(
        1e-4, "Base learning rate (encoder and decoder; scaled by the batch-size rule).", key="optimizer.lr"
    )
    weight_decay: float = param(1e-4, "AdamW weight decay.", key="optimizer.weight_decay")
    betas: tuple = param((0.9, 0.999), "AdamW betas.", key="optimizer.betas")
    param_groups: list = param(
        [], "Groups {params: regex, lr, weight_decay} by parameter name.", key="optimizer.params"
    )


@dataclass(frozen=True)
class ScheduleConfig(Section):
    """Learning-rate schedule ``flatcosine``: warm-up, flat, cosine decay, flat minimum. Notebook 03."""

    epochs: int = param(72, "Total training epochs (official spelling: epoches).", key="epoches")
    flat_epoch: int | None = param(None, "Epoch where the cosine decay starts; null = half of epochs.")
    no_aug_epoch: int = param(0, "Last epochs without strong augmentation, at the minimum LR.")
    warmup_iter: int = param(2000, "Iterations of the quadratic LR warm-up (steps).")
    lr_gamma: float = param(0.5, "Final LR = lr * lr_gamma.")
    epoch_rule: str = param(
        "official", "How milestones follow a new epoches: official (Customizing Epoch) or proportional (deimv2 key)."
    )


@dataclass(frozen=True)
class DataConfig(Section):
    """``train_dataloader`` / ``val_dataloader``: paths, transforms, policy, batch sizes. Notebooks 02, 04."""

    train_img_folder: str | None = param(None, "Training images folder.", key="train_dataloader.dataset.img_folder")
    train_ann_file: str | None = param(None, "Training COCO JSON.", key="train_dataloader.dataset.ann_file")
    val_img_folder: str | None = param(None, "Validation images folder.", key="val_dataloader.dataset.img_folder")
    val_ann_file: str | None = param(None, "Validation COCO JSON.", key="val_dataloader.dataset.ann_file")
    train_ops: list = param(
        [], "Training transforms ({type: ..., args}).", key="train_dataloader.dataset.transforms.ops"
    )
    val_ops: list = param([], "Validation transforms.", key="val_dataloader.dataset.transforms.ops")
    policy: dict = param(
        {},
        "When strong augmentation stops: {name, epoch: [start, mid, stop], ops}.",
        key="train_dataloader.dataset.transforms.policy",
    )
    mosaic_prob: float = param(0.5, "Probability of Mosaic.", key="train_dataloader.dataset.transforms.mosaic_prob")
    collate: dict = param(
        {},
        "Batch collate settings (multi-scale, MixUp, CopyBlend, stop_epoch), without 'type'.",
        key="train_dataloader.collate_fn",
    )
    batch_size: int = param(
        32, "Total training batch, all GPUs together (images).", key="train_dataloader.total_batch_size"
    )
    val_batch_size: int = param(64, "Total validation batch (images).", key="val_dataloader.total_batch_size")
    num_workers: int = param(0, "Training data-loader worker processes.", key="train_dataloader.num_workers")
    val_num_workers: int = param(0, "Validation data-loader worker processes.", key="val_dataloader.num_workers")
    shuffle: bool = param(True, "Shuffle the training set each epoch.", key="train_dataloader.shuffle")
    drop_last: bool = param(True, "Drop the last incomplete training batch.", key="train_dataloader.drop_last")
    multiscale: bool = param(True, "Multi-scale training in the collate function (deimv2 key).", key="multiscale")


@dataclass(frozen=True)
class TrainConfig(Section):
    """Run settings: output, AMP, EMA, clipping, checkpoints, seed. Notebook 04."""

    output_dir: str | None = param(None, "Where last.pth, best.pth and logs go; null = ./outputs/<config name>.")
    use_amp: bool = param(False, "Mixed precision (CUDA only; off on CPU).")
    amp_dtype: str = param("auto", "AMP dtype: auto, bfloat16 or float16 (deimv2 key).")
    use_ema: bool = param(True, "Keep an exponential moving average of the weights for evaluation and saving.")
    ema_decay: float = param(0.9999, "EMA decay per step.", key="ema.decay")
    ema_warmups: int = param(1000, "EMA warm-up (steps): the decay ramps up over them.", key="ema.warmups")
    ema_start: int = param(0, "Step at which the EMA starts.", key="ema.start")
    ema_restart_decay: float = param(
        0.9999, "EMA decay after the restart at stop_epoch.", key="train_dataloader.collate_fn.ema_restart_decay"
    )
    clip_max_norm: float = param(0.1, "Gradient clipping: maximum global L2 norm; 0 = off.")
    checkpoint_freq: int = param(
        5, "Also save checkpoint<epoch>.pth every this many epochs, as the official solver; 0 = off."
    )
    sync_bn: bool = param(True, "SyncBatchNorm with several GPUs.")
    find_unused_parameters: bool = param(True, "DDP find_unused_parameters.")
    seed: int = param(0, "Random seed (deimv2 key).")
    accumulate: int = param(1, "Gradient accumulation steps (deimv2 key).")
    print_freq: int = param(100, "Without a progress bar: print the loss every this many optimizer steps; 0 = off.")
    patience: int = param(0, "Early stopping: epochs without a better val AP; 0 = off (the official recipe).")
    scale_lr: bool = param(
        True, "Scale LR, EMA decay and warm-ups when the batch differs from reference_batch_size (deimv2 key)."
    )
    scale_lr_rule: str = param(
        "linear", "How scale_lr scales: linear (k, the official rule) or sqrt (the square root of k) (deimv2 key)."
    )
    reference_batch_size: int | None = param(
        None, "Total batch the recipe was tuned for (images); load_config sets it to the recipe's batch (deimv2 key)."
    )
    tensorboard: bool = param(False, "Also write TensorBoard logs (deimv2 key).")
    channels_last: bool = param(
        False, "Train in channels-last memory order: same maths, faster convolutions on HGNetv2 (deimv2 key)."
    )
    compile: bool = param(
        False, "torch.compile the model; the first steps compile, a disk cache serves later runs (deimv2 key)."
    )
    cpu_amp: bool = param(
        False, "bf16 autocast when training on a CPU with native bf16 (AVX-512-BF16/AMX) (deimv2 key)."
    )


# --------------------------------------------------------------------------- readers
_MISSING = object()
_SCALARS = {"int": int, "float": float, "bool": bool, "str": str}


def _convert(f: dataclasses.Field, value: Any) -> Any:
    """Scalar fields are converted as the official trainer does (``lr: 5e-4`` is a string in YAML 1.1)."""
    kind = (f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")).removesuffix(" | None")
    if value is None:
        return None
    if kind in _SCALARS:
        return _SCALARS[kind](value)
    if kind == "tuple":
        return tuple(value)
    return copy.deepcopy(value)


def get_dotted(d: Mapping, key: str, default: Any = None) -> Any:
    """``d["a"]["b"]`` for ``key="a.b"``; ``default`` when any part is missing (the one dotted-key lookup)."""
    cur: Any = d
    for part in key.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return default
        cur = cur[part]
    return cur


def set_dotted(d: dict, key: str, value: Any) -> None:
    """``d["a"]["b"] = value`` for ``key="a.b"``, making the missing levels (the one dotted-key write)."""
    parts = key.split(".")
    cur = d
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[part] = nxt
        cur = nxt
    cur[parts[-1]] = value


def section_from_mapping(cls: type, data: Mapping | None, section: str, source: str, convert: bool = False) -> Any:
    """``cls`` from one official YAML section, key for key. An unknown key or a missing required one is a
    Chinese :class:`ConfigError` naming the key, the section and ``source`` (the file). ``convert``: convert
    scalar values to the field's type (training sections); model values pass unchanged."""
    data = dict(data or {})
    names = [f.name for f in fields(cls)]
    unknown = [k for k in data if k not in names and k not in IGNORED_KEYS]
    if unknown:
        lines = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), names, n=2, cutoff=0.6)
            hint = f"你是不是想写 {' 或 '.join(close)}？" if close else "请删除它或检查拼写。"
            lines.append(f"  - {section}.{k}：{section} 没有这个参数。{hint}")
        raise ConfigError(
            f"配置 {source} 的 {section} 段里有未知的键：\n"
            + "\n".join(lines)
            + f"\n{section} 可用的键：{'、'.join(names)}。"
            f"（每个键的含义：deimv2.config.sections.field_docs(deimv2.config.sections.{cls.__name__})）"
        )
    values = {}
    for f in fields(cls):
        if f.name in data:
            values[f.name] = _convert(f, data[f.name]) if convert else copy.deepcopy(data[f.name])
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(
                f"配置 {source} 的 {section} 段缺少必需的键 {f.name}（{f.metadata['doc']}）。"
                f"请在 {section} 段里写上 {f.name}，取值可参考包里同类变体的配置（deimv2/configs/）。"
            )
    return cls(**values)


def section_from_keys(cls: type, raw: Mapping, **computed: Any) -> Any:
    """``cls`` from the dotted official keys of its fields (``metadata['key']``, default: the field name) in the
    whole config ``raw``; absent keys take the field default; ``computed`` values are used as given."""
    values = dict(computed)
    for f in fields(cls):
        if f.name in values:
            continue
        value = get_dotted(raw, f.metadata.get("key") or f.name, _MISSING)
        if value is not _MISSING:
            values[f.name] = _convert(f, value)
    return cls(**values)


def default_of(cls: type, name: str) -> Any:
    """The default of field ``name`` of ``cls`` (a fresh copy for list/dict defaults)."""
    f = cls.__dataclass_fields__[name]
    return f.default_factory() if f.default_factory is not MISSING else f.default


def field_docs(cls: type) -> list[tuple[str, str, Any, str]]:
    """``(YAML key, type, default, doc)`` for every field of a section class (notebook 03 prints them)."""
    out = []
    for f in fields(cls):
        required = f.default is MISSING and f.default_factory is MISSING
        default = "（必填）" if required else default_of(cls, f.name)
        type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        out.append((f.metadata.get("key") or f.name, type_name, default, f.metadata.get("doc", "")))
    return out
