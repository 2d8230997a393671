"""Training recipes: ``official`` (the official configs' schedule) and ``small`` (a small dataset from scratch).

Explained in notebook 04_train.ipynb (为什么小数据从头训练要换一套日程). A recipe is plain data: a list of
config overrides, each with a short Chinese reason. It changes only the schedule around the model
(batch size, learning rate and warm-up, the LR curve, augmentation and when it stops, EMA); the DEIMv2 model
and the DEIM criterion stay as they are. ``small`` is the schedule that measured best on the bundled demo from
scratch (``official_rule_e20``/``official_rule_e40`` in the results: batch 8, LRs not rescaled, official epoch
rule), with the last quarter of the epochs, not the official 32 (or half), without strong augmentation
(``small_na10_e40``, better on the demo and, in strict mAP, on the second set ``photo2``; over 3 seeds not below the
old proportional demo schedule on either set, ``*_seed1.json``/``*_seed2.json``); a first version with
batch 4, LR down to 0.1×, EMA 0.995 and augmentation
stopped at 75 % measured worse (``small_v1_e20``) and was dropped. Measured in ``benchmarks/results/recipes/`` (script
``benchmarks/recipes.py``).

    from deimv2.recipes import recipe_overrides
    recipe_overrides("small", epochs=40)   # -> {"train_dataloader.total_batch_size": 8, "scale_lr": False, ...}

``official`` adds nothing: the variant's official config with the official epoch/batch rules
(:mod:`deimv2.epoch_rule`, :mod:`deimv2.batch_rule`); it stays the default, and the right choice when
fine-tuning from official (COCO-pretrained) weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import ALIASES
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
    choices = [
        Choice("epoches", int(epochs), f"总轮数 {int(epochs)}（官方 Atto 的 500 轮是 COCO 的预算）。"),
        Choice(
            "train_dataloader.total_batch_size",
            8,
            "batch size 8：160 张图一轮 20 个优化器步数（optimizer steps）；官方的 128 一轮只有 1 步。"
            "batch 4（步数再翻一倍）连同更低的最终学习率和更强的 EMA 一起试过，20 轮时反而更差"
            "（benchmarks/results/recipes/small_v1_e20.json）。",
        ),
        Choice(
            "scale_lr",
            False,
            "不按官方 batch 规则缩放：那条规则会把学习率按 8/128 线性缩小到十六分之一（EMA 和预热也随之改），从头训练时学得太慢；"
            "保持官方学习率（其余 0.002、骨干 0.001）：一半和两倍的学习率在两个数据集上都实测过，都更差"
            "（benchmarks/results/recipes/small_lrhalf_e40.json、small_lr2_e40*.json）。"
            "学习率预热自动缩短到强增强开始之前（官方规则下是前 4 轮）。",
        ),
        Choice(
            "epoch_rule",
            "official",
            "轮次节点用官方 Customizing Epoch 规则（与 official 配方相同）：在示例数据集上从头训练 20 轮和 40 轮，它都比按比例缩放"
            "（原来的 demo 日程）好——更长的学习率预热和无强增强阶段，让模型最后在原始分布上收敛"
            "（benchmarks/results/recipes/official_rule_e20.json、official_rule_e40.json）。",
        ),
    ]
    if int(epochs) >= 4:  # fewer than 4 epochs: the official short-budget rule (half) decides
        choices.append(
            Choice(
                "no_aug_epoch",
                int(epochs) // 4,
                f"最后 {int(epochs) // 4} 轮（总轮数的四分之一）是无强增强阶段，而不是官方规则给 Atto 的 32 轮"
                "（不到 64 轮时取一半）：强增强开得更久、无强增强阶段更短，40 轮时在示例数据集上四项 mAP 都更高，"
                "在第二个数据集 photo2 上严格 mAP 更高"
                "（benchmarks/results/recipes/small_na10_e40.json、photo2_small_na10_e40.json，"
                "对照 official_rule_e40.json、photo2_small_e40.json）；换 3 个随机种子平均，它在两个数据集上都不低于"
                "原来按比例缩放的 demo 日程（README 的随机种子表，*_seed1.json、*_seed2.json）。",
            )
        )
    return choices


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
        value = "…" if isinstance(c.value, (list, dict)) else c.value
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
