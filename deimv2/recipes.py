"""Training recipes: ``official`` (the official configs' schedule) and ``small`` (a small dataset from scratch).

Explained in notebook 04_train.ipynb (为什么小数据从头训练要换一套日程). A recipe is plain data: a list of
config overrides, each with a short Chinese reason. It changes only the schedule around the model
(batch size, learning rate and warm-up, the LR curve, augmentation and when it stops, EMA); the DEIMv2 model
and the DEIM criterion stay as they are. Measured in ``benchmarks/results/recipes/`` (script
``benchmarks/recipes.py``).

    from deimv2.recipes import recipe_overrides
    recipe_overrides("small", epochs=40)   # -> {"batch_size": 4, "flat_epoch": 24, ...}

``official`` adds nothing: the variant's official config with the official epoch/batch rules
(:mod:`deimv2.epoch_rule`, :mod:`deimv2.batch_rule`); it stays the default, and the right choice when
fine-tuning from official (COCO-pretrained) weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import ALIASES
from .epoch_rule import _round_half_up
from .errors import ConfigError

__all__ = ["RECIPES", "SMALL_DEFAULT_EPOCHS", "check_recipe", "describe_recipe", "recipe_overrides", "Choice"]

RECIPES = ("official", "small")

#: total epochs of the small recipe when the user gives none (the official Atto config says 500, a COCO budget)
SMALL_DEFAULT_EPOCHS = 40


@dataclass(frozen=True)
class Choice:
    """One override of a recipe: config key, value, and why (Chinese)."""

    key: str
    value: Any
    why: str


def _small(epochs: int) -> list[Choice]:
    e = int(epochs)
    r = _round_half_up
    aug_stop = max(1, r(0.75 * e))  # strong augmentation ends here ...
    stop = max(aug_stop, e - max(1, r(0.15 * e)))  # ... the last ~15 % are the no-aug stage
    flat = max(1, min(r(0.5 * e), aug_stop))
    matcher = max(flat, r(0.9 * e))
    lr = 0.002
    return [
        Choice(
            "train_dataloader.total_batch_size",
            4,
            "batch size 4：小数据集一轮只有几十张图，batch 小一些每轮的优化器步数（optimizer steps）更多；"
            "从头训练最缺的是步数，不是每步的图片数。",
        ),
        Choice("scale_lr", False, "学习率和 EMA 是为 batch 4 选定的，不再按官方 batch 规则线性缩放。"),
        Choice(
            "optimizer.params",
            [
                {"params": "^(?=.*backbone)(?!.*norm|bn).*$"},
                {"params": "^(?=.*backbone)(?=.*norm|bn).*$", "weight_decay": 0.0},
                {"params": "^(?=.*(?:encoder|decoder))(?=.*(?:norm|bn)).*$", "weight_decay": 0.0},
            ],
            "骨干网络（backbone）的学习率与其余部分相同（参数组里不再单独写 lr）：官方把骨干减半，是为了保护 ImageNet 预训练特征；"
            "从头训练时骨干什么都还没学到，没有要保护的东西。",
        ),
        Choice("optimizer.lr", lr, "基础学习率 0.002（官方值），预热 1 轮后保持平台。"),
        Choice("lr_gamma", 0.1, "最终学习率降到 0.1×（官方 0.5×）：短训练末尾用更小的步子把框收紧。"),
        Choice("epoches", e, f"总轮数 {e}。"),
        Choice("flat_epoch", flat, f"学习率平台（flat）保持到第 {flat} 轮（总轮数的一半），之后余弦下降。"),
        Choice(
            "train_dataloader.dataset.transforms.policy.epoch",
            [1, flat, aug_stop],
            f"强数据增强（Mosaic/ZoomOut/IoUCrop/颜色扰动）从第 1 轮开始（预热也只有 1 轮），"
            f"在第 {aug_stop} 轮（约 75%）关闭，给模型留出在原始分布上收敛的时间。",
        ),
        Choice(
            "no_aug_epoch",
            e - stop,
            f"最后 {e - stop} 轮（约 15%）是无增强阶段：学习率最小，从最佳权重重启 EMA。",
        ),
        Choice("train_dataloader.collate_fn.stop_epoch", stop, f"多尺度训练在第 {stop} 轮停止。"),
        Choice(
            "DEIMCriterion.matcher.matcher_change_epoch",
            matcher,
            f"匹配器在第 {matcher} 轮（约 90%）切换到按 IoU 排序的代价。",
        ),
        Choice(
            "ema",
            {"type": "ModelEMA", "decay": 0.995, "warmups": 100, "start": 0},
            "EMA decay 0.995、预热 100 步：官方 0.9999/1000 步是为 COCO 上几十万步准备的；"
            "只有一两千步时，EMA 要在几轮之内跟上模型，否则评估的是很久以前的权重。",
        ),
        Choice("train_dataloader.collate_fn.ema_restart_decay", 0.995, "无增强阶段重启 EMA 时用同样的 decay。"),
    ]


def check_recipe(name: str | None) -> str:
    """The recipe name, or a Chinese error for an unknown one."""
    if name is None:
        return "official"
    if str(name) not in RECIPES:
        raise ConfigError(
            f"未知的训练配方 recipe={name!r}。可选：official（官方日程，默认；用官方预训练权重微调时选它）"
            f"或 small（小数据集从头训练）。例如：deimv2 train -c atto --data 数据集目录 --recipe small"
        )
    return str(name)


def recipe_choices(name: str, epochs: int | None = None) -> list[Choice]:
    """The recipe's overrides with their reasons (``official``: none)."""
    name = check_recipe(name)
    if name == "official":
        return []
    return _small(int(epochs or SMALL_DEFAULT_EPOCHS))


def recipe_overrides(name: str, epochs: int | None = None) -> dict[str, Any]:
    """Config overrides of recipe ``name`` for ``epochs`` total epochs (plain dict, dotted keys)."""
    return {c.key: c.value for c in recipe_choices(name, epochs)}


def describe_recipe(name: str, epochs: int | None = None, user: Mapping[str, Any] | None = None) -> str:
    """Chinese summary printed at training start: every choice, and which ones the user's overrides replace."""
    name = check_recipe(name)
    if name == "official":
        return "训练配方 recipe=official：官方配置的日程（官方 Customizing Epoch / Batch Size 规则），不额外改动。"
    user = dict(user or {})
    lines = [f"训练配方 recipe={name}（小数据集从头训练）："]
    for c in recipe_choices(name, epochs):
        mark = f"（被你的设置 {user[c.key]!r} 覆盖）" if c.key in user and user[c.key] != c.value else ""
        value = "…" if isinstance(c.value, (list, dict)) and not c.key.endswith("policy.epoch") else c.value
        lines.append(f"  · {c.key}={value}{mark}：{c.why}")
    return "\n".join(lines)


def epochs_of(overrides: Mapping[str, Any]) -> int | None:
    """The total epochs the user asked for (``epochs`` or ``epoches``), if any."""
    for k in ("epochs", "epoches"):
        if overrides.get(k) is not None:
            return int(overrides[k])
    return None


def merge_recipe(name: str | None, user: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """``(overrides, description)``: the recipe's overrides with the user's on top (the user's win)."""
    name = check_recipe(name)
    user = {ALIASES.get(k, k): v for k, v in user.items()}  # one spelling per key: the user's value wins
    epochs = epochs_of(user)
    return {**recipe_overrides(name, epochs), **user}, describe_recipe(name, epochs, user)
