"""Training recipes: ``auto`` (the default), ``official`` (the official configs' schedule, with the official
batch-size rule) and ``small`` (a small dataset from scratch).

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

    from deimv2.config.recipes import recipe_overrides
    recipe_overrides("small", epochs=40)   # -> {"train_dataloader.total_batch_size": 8, "scale_lr": False, ...}

``official`` adds nothing: the variant's official config with the official epoch/batch rules
(:mod:`deimv2.config.epoch_rule`, :mod:`deimv2.config.batch_rule`): the way to reproduce the COCO recipe on fewer GPUs.

``auto`` (the default, :func:`resolve_auto`) decides from what the run is: from scratch on a small training set
(at most :data:`SMALL_DATASET_IMAGES` images) it is ``small``; fine-tuning (``-t``), resuming, or from scratch on
a larger set it is the official schedule WITHOUT the batch-size rule (``scale_lr: false``), which is what the
official training code does (it never rescales). At Atto's batch 4 the linear rule would divide every learning
rate by 32. ``benchmarks/batch_rule.py`` measures none / linear / square-root scaling side by side, from scratch
and fine-tuning (``batch_rule_scratch.json``, ``batch_rule_tune.json``; the tables are in docs/training.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deimv2.config.loader import ALIASES, MILESTONE_KEYS, MILESTONE_TARGETS
from deimv2.errors import ConfigError

__all__ = [
    "REASON",
    "RECIPES",
    "SMALL_DATASET_IMAGES",
    "SMALL_DEFAULT_EPOCHS",
    "AutoChoice",
    "Choice",
    "check_recipe",
    "describe_recipe",
    "recipe_overrides",
    "resolve_auto",
]

RECIPES = ("auto", "official", "small")

#: how a line of :func:`describe_recipe` that gives one setting's reason starts (the trainer writes those lines to
#: ``recipe.txt`` in the run folder and prints only the others)
REASON = "  · "

#: ``auto`` uses ``small`` from scratch up to this many training images (our choice: the small recipe was measured
#: on sets of 160 and 240 images; beyond a few thousand images the official schedule's longer budget pays off)
SMALL_DATASET_IMAGES = 2000

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
                "按比例缩放轮次节点的日程（docs/benchmarks.md 的随机种子表，*_seed1.json、*_seed2.json）。",
            )
        )
    return choices


def check_recipe(name: str | None) -> str:
    """The recipe name (None means ``auto``), or a Chinese error for an unknown one."""
    if name is None:
        return "auto"
    if str(name) not in RECIPES:
        raise ConfigError(
            f"未知的训练配方 recipe={name!r}。可选：auto（默认，按从头训练/微调和数据集大小自动选择）、"
            f"official（官方日程和官方 batch 规则，复现 COCO 结果时用）或 small（小数据集从头训练）。"
            f"例如：deimv2 train -c atto --data 数据集目录 --recipe official"
        )
    return str(name)


@dataclass(frozen=True)
class AutoChoice:
    """What ``recipe="auto"`` resolved to: a concrete recipe, extra overrides, and the one-line reason."""

    recipe: str
    overrides: dict
    why: str


def resolve_auto(
    *, tune: bool = False, resume: bool = False, n_train: int | None = None, own_schedule: bool = False
) -> AutoChoice:
    """Resolve ``auto`` for a run (see the module docstring). ``own_schedule``: the user set the epoch rule or an
    epoch milestone (``no_aug_epoch``, ``stop_epoch`` …) themselves, so ``small``'s schedule is not imposed."""
    no_rule = {"scale_lr": False}
    if resume:
        return AutoChoice(
            "official", no_rule, "接着训练：学习率、EMA 和调度器状态从 checkpoint 恢复，不按 batch 重新缩放。"
        )
    if tune:
        return AutoChoice(
            "official",
            no_rule,
            "微调（-t）：官方日程，学习率不按 batch 缩放（与官方训练代码相同）。复现官方 COCO 配方用 --recipe official。",
        )
    if n_train is not None and n_train <= SMALL_DATASET_IMAGES and not own_schedule:
        return AutoChoice(
            "small",
            {},
            f"从头训练，训练集 {n_train} 张（≤ {SMALL_DATASET_IMAGES}）：用小数据集配方 small，学习率不按 batch 缩放"
            f"（官方 batch 规则会把学习率按 batch/128 缩小，见 docs/training.md）。",
        )
    size = f"训练集 {n_train} 张" if n_train is not None else "训练集大小未知"
    return AutoChoice(
        "official",
        no_rule,
        f"从头训练，{size}：官方日程，学习率不按 batch 缩放（与官方训练代码相同）。复现官方 COCO 配方用 --recipe official。",
    )


def recipe_choices(name: str, epochs: int | None = None) -> list[Choice]:
    """The recipe's overrides with their reasons (``official``: none; resolve ``auto`` first)."""
    name = check_recipe(name)
    if name == "auto":
        raise ValueError("resolve recipe='auto' with resolve_auto() first")
    if name == "official":
        return []
    return _small(int(epochs or SMALL_DEFAULT_EPOCHS))


def recipe_overrides(name: str, epochs: int | None = None) -> dict[str, Any]:
    """Config overrides of recipe ``name`` for ``epochs`` total epochs (plain dict, dotted keys)."""
    return {c.key: c.value for c in recipe_choices(name, epochs)}


def describe_recipe(name: str, epochs: int | None = None, user: Mapping[str, Any] | None = None) -> str:
    """Chinese summary printed at training start: every choice, and which ones the user's overrides replace."""
    name = check_recipe(name)
    if name == "auto":
        raise ValueError("resolve recipe='auto' with resolve_auto() first")
    if name == "official":
        return "训练配方 recipe=official：官方配置的日程（官方 Customizing Epoch / Batch Size 规则），不额外改动。"
    user = dict(user or {})
    settings, reasons = [], []
    for c in recipe_choices(name, epochs):
        mark = f"（被你的设置 {user[c.key]!r} 覆盖）" if c.key in user and user[c.key] != c.value else ""
        value = "…" if isinstance(c.value, (list, dict)) else c.value
        settings.append(f"{c.key.rsplit('.', 1)[-1]}={value}{mark}")
        reasons.append(f"{REASON}{c.key}={value}{mark}：{c.why}")
    return "\n".join([f"训练配方 recipe={name}（小数据集从头训练）：{'、'.join(settings)}", *reasons])


def epochs_of(overrides: Mapping[str, Any]) -> int | None:
    """The total epochs the user asked for (``epochs`` or ``epoches``), if any."""
    for k in ("epochs", "epoches"):
        if overrides.get(k) is not None:
            return int(overrides[k])
    return None


def merge_recipe(
    name: str | None, user: Mapping[str, Any], *, tune: bool = False, resume: bool = False, n_train: int | None = None
) -> tuple[dict[str, Any], str]:
    """``(overrides, description)``: the recipe's overrides with the user's on top (the user's win).

    ``auto`` (or None) is resolved first with :func:`resolve_auto` from ``tune``, ``resume`` and ``n_train``.
    """
    name = check_recipe(name)
    user = {ALIASES.get(k, k): v for k, v in user.items()}  # one spelling per key: the user's value wins
    epochs = epochs_of(user)
    if name == "auto":
        own = any(k in user for k in ("epoch_rule", *MILESTONE_KEYS, *MILESTONE_TARGETS))
        auto = resolve_auto(tune=tune, resume=resume, n_train=n_train, own_schedule=own)
        overrides = {**recipe_overrides(auto.recipe, epochs), **auto.overrides, **user}
        note = f"训练配方 recipe=auto → {auto.recipe}：{auto.why}"
        if auto.recipe == "small":
            settings, reasons = describe_recipe("small", epochs, user).split("\n", 1)
            note += "\n  设置：" + settings.split("：", 1)[1] + "\n" + reasons
        return overrides, note
    return {**recipe_overrides(name, epochs), **user}, describe_recipe(name, epochs, user)
