"""YAML config system: variant files, official ``__include__`` chains, dotted overrides, typed config.

One config dictionary uses the official key names (``HGNetv2``, ``HybridEncoder``, ``DEIMTransformer``,
``DEIMCriterion``, ``optimizer``, ``train_dataloader``, ``epoches`` ...), so files from the official repo
load unchanged. :func:`load_config` merges, applies overrides, derives the epoch milestones and
returns a typed :class:`Config`. Explained in notebook ``03_config.ipynb``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .checkpoints.variants import VARIANT_TABLE
from .config_checks import check_milestones, validate_overrides
from .epoch_rule import EPOCH_RULES, derive_epoch_milestones, describe_epoch_rule
from .errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

#: short variant name -> official config name (from the one variant table, :mod:`deimv2.checkpoints.variants`)
VARIANTS: dict[str, str] = {v.name: v.config for v in VARIANT_TABLE.values()}

#: user-friendly aliases -> official dotted keys
ALIASES: dict[str, str] = {
    "epochs": "epoches",
    "batch_size": "train_dataloader.total_batch_size",
    "lr": "optimizer.lr",
    "num_workers": "train_dataloader.num_workers",
    "amp": "use_amp",
}

#: epoch milestone name -> the dotted config key it lives in (owned by :func:`derive_milestones_in_dict`)
MILESTONE_TARGETS: dict[str, str] = {
    "flat_epoch": "flat_epoch",
    "no_aug_epoch": "no_aug_epoch",
    "policy_epoch": "train_dataloader.dataset.transforms.policy.epoch",
    "stop_epoch": "train_dataloader.collate_fn.stop_epoch",
    "mixup_epochs": "train_dataloader.collate_fn.mixup_epochs",
    "copyblend_epochs": "train_dataloader.collate_fn.copyblend_epochs",
    "matcher_change_epoch": "DEIMCriterion.matcher.matcher_change_epoch",
}
MILESTONE_KEYS = tuple(MILESTONE_TARGETS.values())

BACKBONES = ("HGNetv2", "DINOv3STAs")
ENCODERS = ("HybridEncoder", "LiteEncoder")


# --------------------------------------------------------------------------- YAML files
def resolve_config_path(name: str | Path) -> Path:
    """Variant (``atto``), official config name (``deimv2_dinov3_s_coco``) or a YAML path."""
    text = str(name).strip()
    key = text.lower()
    if key in VARIANTS:
        return CONFIG_DIR / f"{VARIANTS[key]}.yaml"
    stem = Path(key).stem if key.endswith((".yml", ".yaml")) else key
    if stem in VARIANTS.values() and not Path(text).exists():
        return CONFIG_DIR / f"{stem}.yaml"
    path = Path(text).expanduser()
    if path.is_file():
        return path
    choices = "、".join(VARIANTS)
    raise ConfigError(
        f"找不到配置 '{text}'：它既不是模型变体名（{choices}），也不是官方配置名"
        f"（如 deimv2_dinov3_s_coco），也不是存在的 YAML 文件。请检查拼写或文件路径。"
    )


def merge_dicts(base: dict, update: Mapping) -> dict:
    """Recursively merge ``update`` into a copy of ``base``; dicts merge, everything else replaces."""
    out = copy.deepcopy(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = merge_dicts(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def read_yaml(path: str | Path, _stack: tuple[Path, ...] = ()) -> dict:
    """Read a YAML file and resolve its ``__include__`` chain (relative to the file)."""
    path = Path(path).resolve()
    if path in _stack:
        chain = " -> ".join(str(p) for p in (*_stack, path))
        raise ConfigError(f"配置文件的 __include__ 形成了循环：{chain}。请删除其中一个 include。")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"配置文件不存在：{path}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"配置文件 {path} 不是合法的 YAML：{e}。请检查缩进和冒号。") from None
    if not isinstance(data, dict):
        raise ConfigError(f"配置文件 {path} 的顶层应当是键值对（字典），而不是 {type(data).__name__}。")
    includes = data.pop("__include__", []) or []
    if isinstance(includes, str):
        includes = [includes]
    merged: dict = {}
    for inc in includes:
        inc_path = (path.parent / inc).resolve()
        if not inc_path.is_file():
            raise ConfigError(
                f"配置文件 {path} 的 __include__ 引用了不存在的文件 {inc_path}。"
                f"请把官方仓库的 configs/ 目录一起复制过来，或改用本包自带的变体名（如 atto、s）。"
            )
        merged = merge_dicts(merged, read_yaml(inc_path, (*_stack, path)))
    return merge_dicts(merged, data)


# --------------------------------------------------------------------------- overrides
def parse_overrides(items: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["a.b=1", "epoches=62"]`` (the seed's ``--update`` syntax) -> ``{"a.b": 1, "epoches": 62}``."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(
                f"覆盖参数 '{item}' 缺少 '='。正确写法如 epoches=62 或 train_dataloader.total_batch_size=4。"
            )
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"覆盖参数 '{item}' 的键为空。")
        try:
            out[key] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            out[key] = value
    return out


def get_dotted(d: Mapping, key: str, default: Any = None) -> Any:
    cur: Any = d
    for part in key.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return default
        cur = cur[part]
    return cur


def set_dotted(d: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    cur = d
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[part] = nxt
        cur = nxt
    cur[parts[-1]] = value


def apply_overrides(raw: dict, overrides: Mapping[str, Any]) -> tuple[dict, set[str]]:
    """Apply dotted overrides (aliases expanded); returns the new dict and the set of keys set."""
    out = copy.deepcopy(raw)
    touched: set[str] = set()
    for key, value in overrides.items():
        key = ALIASES.get(key, key)
        # a bare section kwarg such as "num_queries" is not guessed: we require the full key
        set_dotted(out, key, value)
        touched.add(key)
    return out, touched


# --------------------------------------------------------------------------- epoch milestones
def milestones_of(raw: Mapping) -> dict[str, Any]:
    """The official recipe's epoch keys, as read from a config dict."""
    return {
        "epoches": int(raw.get("epoches", 72)),
        "flat_epoch": raw.get("flat_epoch"),
        "no_aug_epoch": raw.get("no_aug_epoch"),
        "policy_epoch": get_dotted(raw, "train_dataloader.dataset.transforms.policy.epoch"),
        "stop_epoch": get_dotted(raw, "train_dataloader.collate_fn.stop_epoch"),
        "mixup_epochs": get_dotted(raw, "train_dataloader.collate_fn.mixup_epochs"),
        "copyblend_epochs": get_dotted(raw, "train_dataloader.collate_fn.copyblend_epochs"),
        "matcher_change_epoch": get_dotted(raw, "DEIMCriterion.matcher.matcher_change_epoch"),
    }


def derive_milestones_in_dict(raw: dict, epochs: int, keep: set[str], recipe: Mapping | None = None) -> dict[str, Any]:
    """Derive every epoch milestone of ``recipe`` (default: the one in ``raw``) for ``epochs`` total epochs and
    write them into ``raw``; keys in ``keep`` (set explicitly by the user) stay as set.

    The rule is ``raw['epoch_rule']`` (``official``, default, or ``proportional``), see :mod:`deimv2.epoch_rule`.
    An explicit ``no_aug_epoch`` (or ``stop_epoch`` inside the run) and ``flat_epoch`` feed the official rule
    (used then). Returns the derived milestones (with ``short_budget`` and ``note``, printed at training start).
    """
    rule = str(raw.get("epoch_rule") or "official")
    if rule not in EPOCH_RULES:
        raise ConfigError(
            f"epoch_rule={rule!r} 无效。可选：official（官方 Customizing Epoch 规则，默认）"
            f"或 proportional（各节点按比例缩放，旧规则）。"
        )
    recipe = dict(recipe) if recipe is not None else milestones_of(raw)
    epochs = int(epochs)
    if epochs < 1:
        raise ConfigError(f"epoches={epochs} 无效：总轮数必须 ≥ 1。")
    no_aug = flat = None
    if "no_aug_epoch" in keep and raw.get("no_aug_epoch") is not None:
        no_aug = int(raw["no_aug_epoch"])
    elif MILESTONE_TARGETS["stop_epoch"] in keep and get_dotted(raw, MILESTONE_TARGETS["stop_epoch"]) is not None:
        stop = int(get_dotted(raw, MILESTONE_TARGETS["stop_epoch"]))
        no_aug = epochs - stop if 1 <= stop < epochs else None  # a stop beyond the end turns the no-aug stage off
    if "flat_epoch" in keep and raw.get("flat_epoch") is not None:
        flat = int(raw["flat_epoch"])
    if no_aug is not None and not 0 <= no_aug < epochs:
        raise ConfigError(f"no_aug_epoch={no_aug} 必须 ≥ 0 且小于总轮数 epoches={epochs}（训练阶段至少 1 轮）。")
    if no_aug is not None or flat is not None:
        rule = "official"  # explicit stage lengths are placed by the official rule whatever epoch_rule says
    derived = derive_epoch_milestones(epochs, recipe, rule=rule, no_aug_epoch=no_aug, flat_epoch=flat)
    raw["epoches"] = epochs
    for name, key in MILESTONE_TARGETS.items():
        if key in keep or name not in derived:
            continue
        set_dotted(raw, key, derived[name])
    derived["note"] = describe_epoch_rule(derived, recipe, rule)
    return derived


# --------------------------------------------------------------------------- typed config
@dataclass
class ModelConfig:
    backbone_type: str
    backbone: dict
    encoder_type: str
    encoder: dict
    decoder: dict
    num_top_queries: int = 300


@dataclass
class MatcherConfig:
    weight_dict: dict
    alpha: float = 0.25
    gamma: float = 2.0
    change_matcher: bool = False
    iou_order_alpha: float = 1.0
    matcher_change_epoch: int = 10000


@dataclass
class CriterionConfig:
    weight_dict: dict
    losses: list
    matcher: MatcherConfig
    gamma: float = 1.5
    alpha: float = 0.75
    reg_max: int = 32
    use_uni_set: bool = True


@dataclass
class OptimizerConfig:
    lr: float
    weight_decay: float
    betas: tuple = (0.9, 0.999)
    param_groups: list = field(default_factory=list)


@dataclass
class ScheduleConfig:
    epochs: int
    flat_epoch: int
    no_aug_epoch: int
    warmup_iter: int = 2000
    lr_gamma: float = 0.5


@dataclass
class DataConfig:
    train_img_folder: str | None
    train_ann_file: str | None
    val_img_folder: str | None
    val_ann_file: str | None
    train_ops: list
    val_ops: list
    policy: dict
    mosaic_prob: float
    collate: dict
    batch_size: int
    val_batch_size: int
    num_workers: int = 0
    val_num_workers: int = 0
    shuffle: bool = True
    drop_last: bool = True
    multiscale: bool = True


@dataclass
class TrainConfig:
    output_dir: str
    use_amp: bool = False
    amp_dtype: str = "auto"
    use_ema: bool = True
    ema_decay: float = 0.9999
    ema_warmups: int = 1000
    ema_start: int = 0
    ema_restart_decay: float = 0.9999
    clip_max_norm: float = 0.1
    checkpoint_freq: int = 5
    sync_bn: bool = True
    find_unused_parameters: bool = True
    seed: int = 0
    accumulate: int = 1
    print_freq: int = 100
    patience: int = 0  # early stopping: epochs without a better val AP; 0 = off (the official recipe)


@dataclass
class Config:
    """Typed view of a DEIMv2 config. ``raw`` keeps the merged official-style dict (saved in checkpoints)."""

    name: str
    num_classes: int
    eval_spatial_size: list
    input_mean: list | None
    input_std: list | None
    remap_mscoco_category: bool
    model: ModelConfig
    criterion: CriterionConfig
    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    data: DataConfig
    train: TrainConfig
    raw: dict
    milestones: dict = field(default_factory=dict)
    class_names: list | None = None
    #: how the milestones were derived from the recipe (Chinese, printed at training start); "" if not derived
    milestone_note: str = ""

    @property
    def normalize(self) -> bool:
        """Whether inputs get ImageNet mean/std normalisation (DINOv3 variants only)."""
        return self.input_mean is not None

    def to_dict(self) -> dict:
        return copy.deepcopy(self.raw)


def _normalize_stats(ops: list) -> tuple[list | None, list | None]:
    for op in ops or []:
        if isinstance(op, Mapping) and op.get("type") == "Normalize":
            return list(op.get("mean", (0.485, 0.456, 0.406))), list(op.get("std", (0.229, 0.224, 0.225)))
    return None, None


def _section(raw: Mapping, name: str) -> dict:
    sec = raw.get(name) or {}
    if not isinstance(sec, Mapping):
        raise ConfigError(f"配置中的 '{name}' 应当是一个字典（若干 键: 值），现在是 {sec!r}。")
    return dict(sec)


def _batch_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if str(value).strip().lower() == "auto":
        raise ConfigError(
            "batch_size=auto 只能在训练时用 -u batch_size=auto（或 train(..., batch_size='auto')）给出，"
            "不能写进配置文件；它会在训练开始前换成实测的整数。"
        )
    raise ConfigError(f"train_dataloader.total_batch_size 必须是正整数或 auto，现在是 {value!r}。")


def config_from_dict(raw: dict, name: str = "custom") -> Config:
    """Build the typed :class:`Config` from a merged official-style dict (validates the key parts)."""
    deim = _section(raw, "DEIM")
    backbone_type = deim.get("backbone", "HGNetv2")
    encoder_type = deim.get("encoder", "HybridEncoder")
    if backbone_type not in BACKBONES:
        raise ConfigError(f"不支持的 backbone '{backbone_type}'，可选：{', '.join(BACKBONES)}。")
    if encoder_type not in ENCODERS:
        raise ConfigError(f"不支持的 encoder '{encoder_type}'，可选：{', '.join(ENCODERS)}。")
    num_classes = raw.get("num_classes", 80)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes 必须是正整数，现在是 {num_classes!r}。")
    eval_size = list(raw.get("eval_spatial_size") or [640, 640])

    crit = _section(raw, "DEIMCriterion")
    m = dict(crit.get("matcher") or {})
    matcher = MatcherConfig(
        weight_dict=dict(m.get("weight_dict", {"cost_class": 2, "cost_bbox": 5, "cost_giou": 2})),
        alpha=m.get("alpha", 0.25),
        gamma=m.get("gamma", 2.0),
        change_matcher=bool(m.get("change_matcher", False)),
        iou_order_alpha=m.get("iou_order_alpha", 1.0),
        matcher_change_epoch=int(m.get("matcher_change_epoch", 10000)),
    )
    criterion = CriterionConfig(
        weight_dict=dict(crit.get("weight_dict", {})),
        losses=list(crit.get("losses", ["mal", "boxes"])),
        matcher=matcher,
        gamma=crit.get("gamma", 1.5),
        alpha=crit.get("alpha", 0.75),
        reg_max=crit.get("reg_max", 32),
        use_uni_set=bool(crit.get("use_uni_set", True)),
    )

    opt = _section(raw, "optimizer")
    optimizer = OptimizerConfig(
        lr=float(opt.get("lr", 1e-4)),
        weight_decay=float(opt.get("weight_decay", 1e-4)),
        betas=tuple(opt.get("betas", (0.9, 0.999))),
        param_groups=list(opt.get("params") or []),
    )
    epochs = int(raw.get("epoches", 72))
    schedule = ScheduleConfig(
        epochs=epochs,
        flat_epoch=int(raw.get("flat_epoch", epochs // 2)),
        no_aug_epoch=int(raw.get("no_aug_epoch", 0)),
        warmup_iter=int(raw.get("warmup_iter", 2000)),
        lr_gamma=float(raw.get("lr_gamma", 0.5)),
    )

    tl, vl = _section(raw, "train_dataloader"), _section(raw, "val_dataloader")
    tds, vds = dict(tl.get("dataset") or {}), dict(vl.get("dataset") or {})
    ttr, vtr = dict(tds.get("transforms") or {}), dict(vds.get("transforms") or {})
    val_ops = list(vtr.get("ops") or [])
    mean, std = _normalize_stats(val_ops)
    collate = dict(tl.get("collate_fn") or {})
    collate.pop("type", None)
    data = DataConfig(
        train_img_folder=tds.get("img_folder"),
        train_ann_file=tds.get("ann_file"),
        val_img_folder=vds.get("img_folder"),
        val_ann_file=vds.get("ann_file"),
        train_ops=list(ttr.get("ops") or []),
        val_ops=val_ops,
        policy=dict(ttr.get("policy") or {}),
        mosaic_prob=float(ttr.get("mosaic_prob", 0.5)),
        collate=collate,
        batch_size=_batch_int(tl.get("total_batch_size", 32)),
        val_batch_size=int(vl.get("total_batch_size", 64)),
        num_workers=int(tl.get("num_workers", 0)),
        val_num_workers=int(vl.get("num_workers", 0)),
        shuffle=bool(tl.get("shuffle", True)),
        drop_last=bool(tl.get("drop_last", True)),
        multiscale=bool(raw.get("multiscale", True)),
    )
    ema = dict(raw.get("ema") or {})
    train = TrainConfig(
        output_dir=str(raw.get("output_dir", f"./outputs/{name}")),
        use_amp=bool(raw.get("use_amp", False)),
        amp_dtype=str(raw.get("amp_dtype", "auto")),
        use_ema=bool(raw.get("use_ema", True)),
        ema_decay=float(ema.get("decay", 0.9999)),
        ema_warmups=int(ema.get("warmups", 1000)),
        ema_start=int(ema.get("start", 0)),
        ema_restart_decay=float(collate.get("ema_restart_decay", 0.9999)),
        clip_max_norm=float(raw.get("clip_max_norm", 0.1)),
        checkpoint_freq=int(raw.get("checkpoint_freq", 5)),
        sync_bn=bool(raw.get("sync_bn", True)),
        find_unused_parameters=bool(raw.get("find_unused_parameters", True)),
        seed=int(raw.get("seed", 0)),
        accumulate=int(raw.get("accumulate", 1)),
        print_freq=int(raw.get("print_freq", 100)),
        patience=raw.get("patience") or 0,
    )
    if not isinstance(train.patience, int) or isinstance(train.patience, bool) or train.patience < 0:
        raise ConfigError(
            f"patience 必须是 ≥ 0 的整数（验证集 AP 连续多少轮没有提升就提前停止；0 = 不早停），"
            f"现在是 {train.patience!r}。例如 -u patience=10。"
        )
    if train.accumulate < 1:
        raise ConfigError(f"accumulate 必须 ≥ 1，现在是 {train.accumulate}。")
    if data.batch_size < 1:
        raise ConfigError(f"train_dataloader.total_batch_size 必须 ≥ 1，现在是 {data.batch_size}。")
    model = ModelConfig(
        backbone_type=backbone_type,
        backbone=_section(raw, backbone_type),
        encoder_type=encoder_type,
        encoder=_section(raw, encoder_type),
        decoder=_section(raw, "DEIMTransformer"),
        num_top_queries=int(_section(raw, "PostProcessor").get("num_top_queries", 300)),
    )
    names = raw.get("class_names")
    return Config(
        name=name,
        num_classes=num_classes,
        eval_spatial_size=eval_size,
        input_mean=mean,
        input_std=std,
        remap_mscoco_category=bool(raw.get("remap_mscoco_category", False)),
        model=model,
        criterion=criterion,
        optimizer=optimizer,
        schedule=schedule,
        data=data,
        train=train,
        raw=raw,
        class_names=list(names) if names else None,
    )


def load_config(
    name: str | Path | Mapping,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Config:
    """Load a config by variant name, official config name, YAML path or an already merged dict.

    ``overrides`` are dotted ``key=value`` strings or a mapping; ``kwargs`` are extra top-level overrides
    (``num_classes=4``, ``epochs=12``). Setting ``epoches``/``epochs`` derives every epoch milestone by the
    official "Customizing Epoch" rule (:mod:`deimv2.epoch_rule`); milestones also given explicitly are kept.
    """
    if isinstance(name, Mapping):
        raw, cfg_name = copy.deepcopy(dict(name)), str(name.get("__name__", "custom"))
    else:
        path = resolve_config_path(name)
        raw, cfg_name = read_yaml(path), path.stem
    raw.pop("__name__", None)
    ov = parse_overrides(overrides)
    ov.update(kwargs)
    recipe = milestones_of(raw)
    # the batch size the recipe's LRs/EMA/warm-ups were tuned for (see deimv2.batch_rule), before any override
    raw.setdefault("reference_batch_size", get_dotted(raw, "train_dataloader.total_batch_size"))
    raw.setdefault("scale_lr", True)  # deimv2.batch_rule on/off
    raw.setdefault("epoch_rule", "official")  # deimv2.epoch_rule
    validate_overrides(raw, ov, ALIASES)
    raw, touched = apply_overrides(raw, ov)
    note = ""
    if "epoches" in touched:
        note = derive_milestones_in_dict(raw, int(raw["epoches"]), keep=touched, recipe=recipe)["note"]
    if touched & {"epoches", *MILESTONE_KEYS}:
        check_milestones(milestones_of(raw), touched, MILESTONE_TARGETS)
    if "eval_spatial_size" in touched:
        sync_image_size(raw, list(raw["eval_spatial_size"]))
    cfg = config_from_dict(raw, cfg_name)
    cfg.milestones = milestones_of(raw)  # the values in effect (derived or explicit)
    cfg.milestone_note = note
    return cfg


def sync_image_size(raw: dict, size: list[int]) -> None:
    """Make every size in the recipe follow ``eval_spatial_size`` [h, w]: train/val ``Resize``, Mosaic
    (half the size, as official) and the multi-scale ``base_size`` of the collate function."""
    h, w = int(size[0]), int(size[1])
    raw["eval_spatial_size"] = [h, w]
    for loader in ("train_dataloader", "val_dataloader"):
        for op in get_dotted(raw, f"{loader}.dataset.transforms.ops") or []:
            if op.get("type") == "Resize":
                op["size"] = [h, w]
            elif op.get("type") == "Mosaic":
                op["output_size"] = max(h, w) // 2
    if get_dotted(raw, "train_dataloader.collate_fn") is not None:
        set_dotted(raw, "train_dataloader.collate_fn.base_size", max(h, w))


def format_milestones(cfg: Config) -> str:
    """Chinese one-screen summary of the epoch milestones (printed at training start)."""
    m = milestones_of(cfg.raw)
    return (
        f"总轮数 epoches={m['epoches']}，学习率平台期 flat_epoch={m['flat_epoch']}，"
        f"最后 no_aug_epoch={m['no_aug_epoch']} 轮学习率保持最小，"
        f"第 stop_epoch={m['stop_epoch']} 轮重新加载最佳权重并重启 EMA，"
        f"数据增强策略 policy.epoch={m['policy_epoch']}（强增强在最后一个值关闭），MixUp 轮次={m['mixup_epochs']}，"
        f"CopyBlend 轮次={m['copyblend_epochs']}，匹配器切换 matcher_change_epoch={m['matcher_change_epoch']}"
        + (cfg.milestone_note or "")
    )


def save_config(cfg: Config | Mapping, path: str | Path) -> Path:
    """Write a self-contained YAML (UTF-8, Chinese kept) that :func:`load_config` reads back."""
    raw = cfg.raw if isinstance(cfg, Config) else dict(cfg)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path
