"""Checks of what a user changes in a config: override keys (unknown keys are errors, with the closest known ones),
value types and ranges, contradicting epoch milestones, and the image size a model can be built for.

Called by :func:`deimv2.config.loader.load_config` before any override is applied, so a typo never starts a long training
with the recipe's defaults. Plain data in, nothing imported from :mod:`deimv2.config.loader` (no import cycle).
Policy: ``docs/errors.md``. Explained in notebook ``03_config.ipynb``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from deimv2.config.sections import STRICT_SECTIONS, get_dotted
from deimv2.errors import ConfigError

if TYPE_CHECKING:
    from deimv2.config.loader import Config

__all__ = [
    "OPTIONAL_KEYS",
    "check_enough_queries",
    "check_image_size",
    "check_milestones",
    "known_keys",
    "validate_overrides",
]

#: keys the code reads with a default although no bundled YAML sets them (add new optional keys here)
OPTIONAL_KEYS = (
    "tensorboard",
    "class_names",
    "patience",
    "HGNetv2.pretrained",
    "DINOv3STAs.weights_path",
    # set by train(data=..., output_dir=..., seed=..., use_amp=...) on configs that may not carry them
    "output_dir",
    "seed",
    "use_amp",
    "remap_mscoco_category",
    "train_dataloader.dataset.img_folder",
    "train_dataloader.dataset.ann_file",
    "val_dataloader.dataset.img_folder",
    "val_dataloader.dataset.ann_file",
)

#: (key, minimum) for values that must be whole numbers
_INT_MIN = {
    "epoches": 1,
    "train_dataloader.total_batch_size": 1,
    "val_dataloader.total_batch_size": 1,
    "train_dataloader.num_workers": 0,
    "val_dataloader.num_workers": 0,
    "num_classes": 1,
    "accumulate": 1,
    "warmup_iter": 0,
    "checkpoint_freq": 0,
    "print_freq": 0,
    "seed": 0,
    "DEIMTransformer.num_queries": 1,
    "PostProcessor.num_top_queries": 1,
}
_POSITIVE = ("optimizer.lr", "optimizer.weight_decay", "lr_gamma", "clip_max_norm")


def known_keys(raw: Mapping, aliases: Mapping[str, str]) -> set[str]:
    """Every dotted key of ``raw`` (sections and leaves), the ``aliases``, :data:`OPTIONAL_KEYS` and every field of
    the typed sections ``raw`` has (:data:`~deimv2.config.sections.STRICT_SECTIONS`), set in the file or not."""
    out: set[str] = set(aliases) | set(OPTIONAL_KEYS)
    for section, cls in STRICT_SECTIONS.items():
        if get_dotted(raw, section) is not None:
            out.update(f"{section}.{f}" for f in cls.__dataclass_fields__)

    def walk(d: Mapping, prefix: str) -> None:
        for k, v in d.items():
            out.add(f"{prefix}{k}")
            if isinstance(v, Mapping):
                walk(v, f"{prefix}{k}.")

    walk(raw, "")
    return out


def _suggest(key: str, known: set[str]) -> str:
    last = {k.rsplit(".", 1)[-1]: k for k in sorted(known, key=len, reverse=True)}
    close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)
    close += [last[m] for m in difflib.get_close_matches(key.rsplit(".", 1)[-1], sorted(last), n=3, cutoff=0.75)]
    close = list(dict.fromkeys(close))[:3]
    return f"你是不是想写 {' 或 '.join(close)}？" if close else "请检查拼写。"


def _type_name(v: Any) -> str:
    return {bool: "true/false", int: "整数", float: "数字", str: "文字", list: "列表 [..]", dict: "字典 {..}"}.get(
        type(v), type(v).__name__
    )


def validate_overrides(raw: Mapping, overrides: Mapping[str, Any], aliases: Mapping[str, str]) -> None:
    """Refuse, with a Chinese message, an override whose key the config does not know (with the closest known
    keys), whose value has the wrong type for that key, or whose value is out of range. Runs before anything
    else so that a typo never starts a long training with the recipe's defaults."""
    known = known_keys(raw, aliases)
    unknown = [k for k in overrides if aliases.get(k, k) not in known]
    if unknown:
        lines = "\n".join(f"  - '{k}'：{_suggest(k, known)}" for k in unknown)
        raise ConfigError(
            f"未知的配置键（当前配置里没有这些项，设置了也不会起任何作用，所以在开始前就停下）：\n{lines}\n"
            '完整的键列表：deimv2.load_config("变体名").raw（notebook 03_config 有说明）。'
        )
    for given, value in overrides.items():
        key = aliases.get(given, given)
        shown = given if given == key else f"{given}（即 {key}）"
        old = get_dotted(raw, key)
        if (
            value is None
            or old is None
            or (key == "train_dataloader.total_batch_size" and str(value).lower() == "auto")
        ):
            continue  # (batch_size=auto: the trainer resolves it; a config file holding it is explained later)
        ok = (isinstance(value, bool) == isinstance(old, bool)) and (
            isinstance(value, type(old))
            or (isinstance(old, float) and isinstance(value, int))
            or (isinstance(old, (list, tuple)) and isinstance(value, (list, tuple)))
        )
        if not ok:
            raise ConfigError(
                f"配置键 {shown} 的值 {value!r} 类型不对：应为{_type_name(old)}（配方里是 {old!r}），"
                f"收到的是{_type_name(value)}。例如 -u {given}={old!r}".replace("True", "true").replace(
                    "False", "false"
                )
                + "。"
            )
        if key in _INT_MIN and value < _INT_MIN[key]:
            raise ConfigError(f"配置键 {shown}={value} 超出范围：必须是 ≥ {_INT_MIN[key]} 的整数。")
        if key in _POSITIVE and not value > 0 and not (key != "optimizer.lr" and value == 0):
            raise ConfigError(f"配置键 {shown}={value} 超出范围：必须大于 0。")
        if key == "eval_spatial_size" and (
            len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        ):
            raise ConfigError(
                f"配置键 eval_spatial_size={value!r} 无效：应为 [高, 宽] 两个正整数（32 的倍数），"
                "例如 eval_spatial_size=[640,640]。"
            )


def check_image_size(cfg: Config) -> None:
    """The model's strides need ``eval_spatial_size`` in multiples of 32, with room for the decoder's queries
    (checked before a model is built)."""
    size = list(cfg.eval_spatial_size)
    if len(size) != 2 or any(int(v) < 32 or int(v) % 32 for v in size):
        raise ConfigError(
            f"eval_spatial_size={size} 不能用于构建模型：高和宽都必须是 32 的倍数且 ≥ 32"
            f"（特征图步长为 8/16/32），例如 [320, 320] 或 [640, 640]。"
        )
    check_enough_queries(cfg, size)


def check_enough_queries(cfg: Config, size: Sequence[int], what: str = "eval_spatial_size") -> None:
    """The decoder picks ``num_queries`` queries among the positions of its feature maps (one per cell of each
    level, ``DEIMTransformer.feat_strides``); a smaller input has too few and would fail inside ``torch.topk``.
    ``what`` names the setting that gave ``size`` (the evaluation size or the smallest multi-scale size)."""
    dec = cfg.model.decoder
    h, w = (int(v) for v in size)
    positions = sum(math.ceil(h / s) * math.ceil(w / s) for s in dec.feat_strides)
    if positions < dec.num_queries:
        least = next(
            n for n in range(32, 4097, 32) if sum(math.ceil(n / s) ** 2 for s in dec.feat_strides) >= dec.num_queries
        )
        raise ConfigError(
            f"{what}={[h, w]} 太小：解码器要从特征图的 {positions} 个位置（步长 {list(dec.feat_strides)}）里选出 "
            f"num_queries={dec.num_queries} 个查询，位置不够。请把输入尺寸调到至少 [{least}, {least}]，"
            f"或用 -u DEIMTransformer.num_queries=N 减少查询数（N ≤ {positions}）。"
        )


def check_milestones(m: Mapping[str, Any], touched: set[str], keys: Mapping[str, str]) -> None:
    """Epoch milestones ``m`` (:func:`deimv2.config.loader.milestones_of`) that contradict each other; ``touched``: the
    dotted keys the user set, ``keys``: milestone name -> dotted key. Only the user's own ranges are checked."""
    e = m["epoches"]
    for name, value in m.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, (int, float)) and v < 0 for v in values if v is not None):
            raise ConfigError(f"轮次设置 {name}={value} 不能是负数。")
    if m["no_aug_epoch"] is not None and not 0 <= int(m["no_aug_epoch"]) < e:
        raise ConfigError(f"no_aug_epoch={m['no_aug_epoch']} 必须小于总轮数 epoches={e}（无强增强阶段是最后几轮）。")
    for name in ("policy_epoch", "mixup_epochs", "copyblend_epochs"):
        v, key = (
            m[name],
            keys[name],
        )  # (a reversed range in a recipe switches the stage off; only a user's own value is checked)
        if key in touched and isinstance(v, (list, tuple)) and list(v) != sorted(v):
            raise ConfigError(f"轮次设置 {name}={list(v)} 的数字必须从小到大（开始轮次在前，结束轮次在后）。")
    if (
        keys["stop_epoch"] in touched
        and "no_aug_epoch" in touched
        and m["stop_epoch"] is not None
        and int(m["stop_epoch"]) != e - int(m["no_aug_epoch"])
    ):
        raise ConfigError(
            f"轮次设置互相矛盾：stop_epoch={m['stop_epoch']}（关闭强增强的轮次）应等于 epoches - no_aug_epoch = "
            f"{e} - {m['no_aug_epoch']} = {e - int(m['no_aug_epoch'])}。只设其中一个即可，另一个会自动推导。"
        )
