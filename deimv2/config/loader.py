"""YAML config system: variant files, official ``__include__`` chains, dotted overrides, typed config.

One config dictionary uses the official key names (``HGNetv2``, ``HybridEncoder``, ``DEIMTransformer``,
``DEIMCriterion``, ``optimizer``, ``train_dataloader``, ``epoches`` ...), so files from the official repo
load unchanged. :func:`load_config` merges, applies overrides, derives the epoch milestones and
returns a typed :class:`Config`. Explained in notebook ``03_config.ipynb``.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deimv2.config.checks import check_milestones, validate_overrides
from deimv2.config.epoch_rule import EPOCH_RULES, derive_epoch_milestones, describe_epoch_rule
from deimv2.config.sections import (
    MODEL_SECTIONS,
    CriterionConfig,
    DataConfig,
    MatcherConfig,
    ModelConfig,
    OptimizerConfig,
    PostProcessorConfig,
    ScheduleConfig,
    TrainConfig,
    default_of,
    get_dotted,
    param,
    section_from_keys,
    section_from_mapping,
    set_dotted,
)
from deimv2.config.variants import VARIANT_TABLE
from deimv2.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

#: short variant name -> official config name (from the one variant table, :mod:`deimv2.config.variants`)
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
    if isinstance(items, Mapping):  # keyword arguments: a string value reads as it would after -u key=
        return {k: parse_value(v) if isinstance(v, str) else v for k, v in items.items()}
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
        out[key] = parse_value(value)
    return out


def parse_value(value: str) -> Any:
    """One override value as ``-u key=value`` reads it: YAML (``true``, ``[1, 2]``, ``0.5``) with YAML 1.2 numbers
    (``1e-3`` is a float); a quoted value stays text."""
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    quoted = value.strip()[:1] in ("'", '"')
    return parsed if quoted else yaml12_numbers(parsed)


_YAML12_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


def yaml12_numbers(value: Any) -> Any:
    """Numbers as YAML 1.2 reads them: PyYAML (YAML 1.1) leaves ``1e-3`` and ``5E4`` as strings; they are floats."""
    if isinstance(value, str) and _YAML12_FLOAT.match(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [yaml12_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: yaml12_numbers(v) for k, v in value.items()}
    return value


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
    """The official recipe's epoch keys (``epoches`` and :data:`MILESTONE_TARGETS`), as read from a config dict."""
    out: dict[str, Any] = {"epoches": int(raw.get("epoches", ScheduleConfig.epochs))}
    out.update({name: get_dotted(raw, key) for name, key in MILESTONE_TARGETS.items()})
    return out


def derive_milestones_in_dict(raw: dict, epochs: int, keep: set[str], recipe: Mapping | None = None) -> dict[str, Any]:
    """Derive every epoch milestone of ``recipe`` (default: the one in ``raw``) for ``epochs`` total epochs and
    write them into ``raw``; keys in ``keep`` (set explicitly by the user) stay as set.

    The rule is ``raw['epoch_rule']`` (``official``, default, or ``proportional``), see :mod:`deimv2.config.epoch_rule`.
    An explicit ``no_aug_epoch`` (or ``stop_epoch`` inside the run) and ``flat_epoch`` feed the official rule
    (used then). Returns the derived milestones (with ``short_budget`` and ``note``, printed at training start).
    """
    rule = str(raw.get("epoch_rule") or ScheduleConfig.epoch_rule)
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
    stop_key, no_aug_key, flat_key = (MILESTONE_TARGETS[k] for k in ("stop_epoch", "no_aug_epoch", "flat_epoch"))
    if no_aug_key in keep and get_dotted(raw, no_aug_key) is not None:
        no_aug = int(get_dotted(raw, no_aug_key))
    elif stop_key in keep and get_dotted(raw, stop_key) is not None:
        stop = int(get_dotted(raw, stop_key))
        no_aug = epochs - stop if 1 <= stop < epochs else None  # a stop beyond the end turns the no-aug stage off
    if flat_key in keep and get_dotted(raw, flat_key) is not None:
        flat = int(get_dotted(raw, flat_key))
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
@dataclass(frozen=True)
class Config:
    """Typed, frozen view of a DEIMv2 config; ``raw`` keeps the merged official-style dict it was read from.

    Change it with :meth:`replace` (a new ``Config``), serialise it with :meth:`to_dict` / :func:`save_config`.
    Treat ``raw`` as read-only: it is the source of every typed field.
    """

    name: str = param(doc="Config name: the YAML file's stem or the name stored with a dict / checkpoint.")
    num_classes: int = param(80, "Number of object classes (set from the dataset's categories by --data).")
    eval_spatial_size: list = param([640, 640], "Model input [height, width] (pixels; multiples of 32).")
    input_mean: list | None = param(None, "ImageNet mean of the val Normalize op (DINOv3 variants); null = none.")
    input_std: list | None = param(None, "ImageNet std of the val Normalize op; null = none.")
    remap_mscoco_category: bool = param(False, "Map 80 contiguous labels back to COCO ids 1..90 (real COCO only).")
    use_focal_loss: bool = param(True, "Sigmoid (focal-style) class scores in post-processing (official).")
    model: ModelConfig = param(ModelConfig(), "Backbone, encoder, decoder and post-processor sections.")
    criterion: CriterionConfig = param(CriterionConfig(), "The DEIMCriterion section.")
    optimizer: OptimizerConfig = param(OptimizerConfig(), "The optimizer section.")
    schedule: ScheduleConfig = param(ScheduleConfig(epochs=72, flat_epoch=36), "The LR schedule keys.")
    data: DataConfig = param(DataConfig(), "The data-loader sections.")
    train: TrainConfig = param(TrainConfig(), "Run settings (output, AMP, EMA, checkpoints, seed).")
    raw: dict = param({}, "The merged official-style dict (every key, official names); read-only.")
    milestones: dict = param({}, "Epoch milestones in effect (epoches + MILESTONE_TARGETS names).")
    class_names: list | None = param(None, "Class names (from the dataset), index = label.")
    milestone_note: str = param("", "How the milestones were derived (Chinese, printed at training start).")

    @property
    def normalize(self) -> bool:
        """Whether inputs get ImageNet mean/std normalisation (DINOv3 variants only)."""
        return self.input_mean is not None

    def to_dict(self) -> dict:
        """The serialised config: a deep copy of :attr:`raw` plus ``"__name__"`` (what checkpoints store);
        :func:`load_config` reads it back to an equal ``Config``."""
        return {**copy.deepcopy(self.raw), "__name__": self.name}

    def replace(self, overrides: Iterable[str] | Mapping[str, Any] | None = None, /, **changes: Any) -> Config:
        """A new ``Config`` with ``overrides`` (dotted keys: ``{"DEIMTransformer.num_queries": 100}``) and
        ``changes`` (top-level keys and aliases: ``num_classes=4``, ``epochs=12``) applied exactly as
        :func:`load_config` applies them (validated; a new ``epoches`` re-derives the milestones from this
        config's). ``self`` is unchanged."""
        return load_config(self, overrides, **changes)


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


def _model_config(raw: Mapping, source: str) -> ModelConfig:
    deim = _section(raw, "DEIM")
    backbone_type = deim.get("backbone", ModelConfig.backbone_type)
    encoder_type = deim.get("encoder", ModelConfig.encoder_type)
    if backbone_type not in BACKBONES:
        raise ConfigError(f"不支持的 backbone '{backbone_type}'，可选：{', '.join(BACKBONES)}。")
    if encoder_type not in ENCODERS:
        raise ConfigError(f"不支持的 encoder '{encoder_type}'，可选：{', '.join(ENCODERS)}。")

    def read(section: str) -> Any:
        return section_from_mapping(MODEL_SECTIONS[section], _section(raw, section), section, source)

    return ModelConfig(
        backbone_type=backbone_type,
        backbone=read(backbone_type),
        encoder_type=encoder_type,
        encoder=read(encoder_type),
        decoder=read("DEIMTransformer"),
        postprocessor=section_from_mapping(
            PostProcessorConfig, _section(raw, "PostProcessor"), "PostProcessor", source, convert=True
        ),
    )


def config_from_dict(raw: dict, name: str = "custom", source: str | None = None, milestone_note: str = "") -> Config:
    """Build the typed :class:`Config` from a merged official-style dict (validates the key parts).

    ``source``: the file (or description) named in error messages; ``milestone_note``: see :class:`Config`.
    """
    source = source or f"'{name}'"
    num_classes = raw.get("num_classes", Config.num_classes)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes 必须是正整数，现在是 {num_classes!r}。")
    crit = _section(raw, "DEIMCriterion")
    matcher = section_from_mapping(MatcherConfig, crit.pop("matcher", None), "DEIMCriterion.matcher", source, True)
    criterion = section_from_mapping(CriterionConfig, crit, "DEIMCriterion", source, convert=True)
    criterion = dataclasses.replace(criterion, matcher=matcher)
    optimizer = section_from_keys(OptimizerConfig, raw)
    schedule = section_from_keys(ScheduleConfig, raw)
    if schedule.flat_epoch is None:
        schedule = dataclasses.replace(schedule, flat_epoch=schedule.epochs // 2)
    collate = _section(_section(raw, "train_dataloader"), "collate_fn")
    collate.pop("type", None)
    batch = get_dotted(raw, "train_dataloader.total_batch_size", DataConfig.batch_size)
    data = section_from_keys(DataConfig, raw, collate=collate, batch_size=_batch_int(batch))
    mean, std = _normalize_stats(data.val_ops)
    patience = raw.get("patience") or 0
    if not isinstance(patience, int) or isinstance(patience, bool) or patience < 0:
        raise ConfigError(
            f"patience 必须是 ≥ 0 的整数（验证集 AP 连续多少轮没有提升就提前停止；0 = 不早停），"
            f"现在是 {patience!r}。例如 -u patience=10。"
        )
    train = section_from_keys(
        TrainConfig, raw, output_dir=str(raw.get("output_dir") or f"./outputs/{name}"), patience=patience
    )
    if train.accumulate < 1:
        raise ConfigError(f"accumulate 必须 ≥ 1，现在是 {train.accumulate}。")
    if data.batch_size < 1:
        raise ConfigError(f"train_dataloader.total_batch_size 必须 ≥ 1，现在是 {data.batch_size}。")
    names = raw.get("class_names")
    return Config(
        name=name,
        num_classes=num_classes,
        eval_spatial_size=list(raw.get("eval_spatial_size") or default_of(Config, "eval_spatial_size")),
        input_mean=mean,
        input_std=std,
        remap_mscoco_category=bool(raw.get("remap_mscoco_category", Config.remap_mscoco_category)),
        use_focal_loss=bool(raw.get("use_focal_loss", Config.use_focal_loss)),
        model=_model_config(raw, source),
        criterion=criterion,
        optimizer=optimizer,
        schedule=schedule,
        data=data,
        train=train,
        raw=raw,
        milestones=milestones_of(raw),
        class_names=list(names) if names else None,
        milestone_note=milestone_note,
    )


@dataclass(frozen=True)
class ConfigSource:
    """A config as read (YAML with its ``__include__`` chain, dict or :class:`Config`), before any override.
    ``where`` names it in errors; ``note``: a ``Config``'s milestone note. Builds copy ``raw``: it is never changed."""

    raw: dict
    name: str
    where: str
    note: str = ""


def read_config_source(name: str | Path | Mapping | Config) -> ConfigSource:
    """What :func:`load_config` reads ``name`` to (the same kinds of names), before any override."""
    if isinstance(name, Config):
        return ConfigSource(copy.deepcopy(name.raw), name.name, f"'{name.name}'", name.milestone_note)
    if isinstance(name, Mapping):
        raw = copy.deepcopy(dict(name))
        cfg_name = str(raw.pop("__name__", "custom"))
        return ConfigSource(raw, cfg_name, f"'{cfg_name}'")
    path = resolve_config_path(name)
    raw = read_yaml(path)
    raw.pop("__name__", None)
    return ConfigSource(raw, path.stem, str(path))


def config_from_source(src: ConfigSource, overrides: Mapping[str, Any]) -> Config:
    """The typed :class:`Config` of ``src`` with already parsed ``overrides`` checked and applied (see
    :func:`load_config`); ``src`` is unchanged."""
    raw, note = copy.deepcopy(src.raw), src.note
    recipe = milestones_of(raw)
    # the batch size the recipe's LRs/EMA/warm-ups were tuned for (see deimv2.config.batch_rule), before any override
    raw.setdefault("reference_batch_size", get_dotted(raw, "train_dataloader.total_batch_size"))
    raw.setdefault("scale_lr", TrainConfig.scale_lr)  # deimv2.config.batch_rule on/off
    raw.setdefault("scale_lr_rule", TrainConfig.scale_lr_rule)  # deimv2.config.batch_rule: linear or sqrt
    raw.setdefault("epoch_rule", ScheduleConfig.epoch_rule)  # deimv2.config.epoch_rule
    for key in ("channels_last", "compile", "cpu_amp"):  # deimv2.engine.speed
        raw.setdefault(key, getattr(TrainConfig, key))
    validate_overrides(raw, overrides, ALIASES)
    raw, touched = apply_overrides(raw, overrides)
    if "epoches" in touched:
        note = derive_milestones_in_dict(raw, int(raw["epoches"]), keep=touched, recipe=recipe)["note"]
    if touched & {"epoches", *MILESTONE_KEYS}:
        check_milestones(milestones_of(raw), touched, MILESTONE_TARGETS)
    if "eval_spatial_size" in touched:
        sync_image_size(raw, list(raw["eval_spatial_size"]))
    return config_from_dict(raw, src.name, source=src.where, milestone_note=note)


def load_config(
    name: str | Path | Mapping | Config,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Config:
    """Load a config: the official recipe of a variant, with your changes on top.

    Setting ``epoches``/``epochs`` derives every epoch milestone by the official "Customizing Epoch" rule
    (:mod:`deimv2.config.epoch_rule`); milestones also given explicitly are kept. A training run reads its config once
    through :func:`deimv2.config.run_config.build_run_config`.

    Args:
        name: a variant name (``"atto"`` … ``"x"``), an official config name (``"deimv2_dinov3_s_coco"``), a YAML
            path, a :class:`Config`, or a dict such as :meth:`Config.to_dict` returns (its ``"__name__"`` is the
            name).
        overrides: dotted ``key=value`` strings (as on the command line) or a mapping of dotted keys.
        **kwargs: top-level overrides, such as ``num_classes=4`` or ``epochs=12``.

    Returns:
        The frozen, typed :class:`Config` (change it with :meth:`Config.replace`).

    Raises:
        ConfigError: an unknown name or key, or a value of the wrong type; the message names the fix.

    Example:
        >>> from deimv2 import load_config
        >>> cfg = load_config("atto", num_classes=3)
        >>> cfg.name, cfg.num_classes, cfg.eval_spatial_size
        ('deimv2_hgnetv2_atto_coco', 3, [320, 320])
        >>> cfg = load_config("atto", ["eval_spatial_size=[160,160]", "DEIMTransformer.num_queries=100"])
        >>> cfg.eval_spatial_size, cfg.model.decoder.num_queries
        ([160, 160], 100)
    """
    ov = parse_overrides(overrides)
    ov.update(parse_overrides(kwargs))
    return config_from_source(read_config_source(name), ov)


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
    """Write a complete, self-contained YAML (UTF-8, Chinese kept; no ``__include__``) that :func:`load_config`
    reads back to an equal config: every merged key, and the output folder even where it was derived from the
    config's name (the file's own name becomes the config's name)."""
    if isinstance(cfg, Config):
        raw = copy.deepcopy(cfg.raw)
        raw.setdefault("output_dir", cfg.train.output_dir)
    else:
        raw = {k: v for k, v in cfg.items() if k != "__name__"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path
