"""The one config of a training or evaluation run: read once, checked, completed, frozen.

Explained in notebook 04_train.ipynb. :func:`build_run_config` is the one function that makes it:

1. read the config (variant, YAML, dict or ``Config``) and parse the user's overrides, once (:func:`check_config`);
   check them (unknown keys, values, epoch milestones, image size) before any dataset file is opened;
2. apply the training recipe (:mod:`deimv2.config.recipes`) under the user's overrides, the dataset's paths and
   classes (:class:`DatasetInfo`) and the run settings (output folder, seed, AMP);
3. put a measured batch in place of ``batch_size=auto`` and apply the batch-size rule (:mod:`deimv2.config.batch_rule`);
4. return the frozen :class:`RunConfig`: the final ``Config``, which keys the user set, and what the rules did.

``train()`` reads the dataset between steps 1 and 2 (the recipe depends on its size, and a bad override must be
reported before a YOLO folder is converted), so it calls :func:`check_config` itself and passes the result on. The
trainer and the builders only read the ``RunConfig``: nothing parses the overrides or loads the config again.

    >>> from deimv2.config.run_config import build_run_config
    >>> run = build_run_config("atto", {"epochs": 12, "lr": 1e-3})
    >>> run.cfg.schedule.epochs, sorted(run.explicit)
    (12, ['epoches', 'optimizer.lr'])
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from deimv2.config.batch_rule import BatchScaling, apply_batch_rule
from deimv2.config.checks import check_image_size
from deimv2.config.loader import (
    ALIASES,
    Config,
    ConfigSource,
    config_from_dict,
    config_from_source,
    parse_overrides,
    read_config_source,
)
from deimv2.config.recipes import merge_recipe
from deimv2.config.sections import set_dotted
from deimv2.errors import ConfigError

__all__ = ["CheckedConfig", "DatasetInfo", "RunConfig", "build_run_config", "check_config", "take_auto_batch"]

#: the override keys that may say ``auto`` (deimv2.engine.autobatch measures the batch)
AUTO_BATCH_KEYS = ("batch_size", "train_dataloader.total_batch_size")
_BATCH_KEY = "train_dataloader.total_batch_size"
#: run settings given as function arguments (``train(output_dir=..., seed=..., use_amp=...)``) and their types
_SETTINGS = {"output_dir": str, "seed": int, "use_amp": bool}


@dataclass(frozen=True)
class CheckedConfig:
    """Step 1 of :func:`build_run_config`: the config as read, the user's overrides (parsed, read-only; without
    ``batch_size=auto``, which is ``auto_batch``) and the checked ``Config`` with those overrides."""

    source: ConfigSource
    user: Mapping[str, Any]
    auto_batch: bool
    cfg: Config

    @property
    def explicit(self) -> frozenset[str]:
        """The dotted keys the user set, aliases expanded (``lr`` -> ``optimizer.lr``)."""
        return frozenset(ALIASES.get(k, k) for k in self.user)


@dataclass(frozen=True)
class DatasetInfo:
    """What a COCO dataset gives a run's config (read by :func:`deimv2.engine.setup.read_dataset`)."""

    train_images: str
    train_ann: str
    val_images: str
    val_ann: str
    class_names: tuple[str, ...]
    n_train: int | None = None  # images in the training split: the ``auto`` recipe's choice

    def overrides(self) -> dict[str, Any]:
        """The config keys the dataset sets: split paths, ``num_classes`` and the class names."""
        return {
            "train_dataloader.dataset.img_folder": self.train_images,
            "train_dataloader.dataset.ann_file": self.train_ann,
            "val_dataloader.dataset.img_folder": self.val_images,
            "val_dataloader.dataset.ann_file": self.val_ann,
            "num_classes": len(self.class_names),
            "class_names": list(self.class_names),
            "remap_mscoco_category": False,
        }


@dataclass(frozen=True)
class RunConfig:
    """The frozen config of one run, made by :func:`build_run_config`; the trainer only reads it.

    ``cfg``: the final config (what ``config.yaml`` and the checkpoints store); ``explicit``: the dotted keys the
    user set (the batch-size rule keeps their values; an explicit ``warmup_iter`` is not shortened);
    ``batch_scaling``: what the batch-size rule did; ``recipe_note``: the recipe's description ("" without one).
    """

    cfg: Config
    explicit: frozenset[str]
    batch_scaling: BatchScaling
    recipe_note: str = ""


def take_auto_batch(overrides: dict[str, Any]) -> bool:
    """Remove ``batch_size=auto`` (or ``train_dataloader.total_batch_size=auto``) from ``overrides``; True if there."""
    auto = False
    for key in AUTO_BATCH_KEYS:
        value = overrides.get(key)
        if isinstance(value, str) and value.strip().lower() == "auto":
            del overrides[key]
            auto = True
    return auto


def check_config(
    config: str | Path | Mapping | Config,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> CheckedConfig:
    """Step 1: read ``config`` and parse ``overrides`` (``-u`` strings or a mapping) and ``kwargs`` (keyword
    arguments; they win), once; raise the Chinese error for a wrong config name, an unknown key or a bad value."""
    user = parse_overrides(overrides)
    user.update(parse_overrides(kwargs))  # train(lr="1e-3") reads as -u lr=1e-3
    auto = take_auto_batch(user)
    source = read_config_source(config)
    cfg = config_from_source(source, user)
    check_image_size(cfg)
    return CheckedConfig(source, MappingProxyType(user), auto, cfg)


def build_run_config(
    config: str | Path | Mapping | Config | CheckedConfig,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    *,
    dataset: DatasetInfo | None = None,
    settings: Mapping[str, Any] | None = None,
    recipe: str | None = None,
    tune: bool = False,
    resume: bool = False,
    world_size: int = 1,
    choose_batch: Callable[[Config], int] | None = None,
) -> RunConfig:
    """The frozen config of a run (see the module docstring for the steps).

    ``config`` and ``overrides`` as for :func:`check_config`, or a :class:`CheckedConfig` (then no ``overrides``).
    ``dataset``: its paths and classes replace the config's. ``settings``: ``output_dir``, ``seed``, ``use_amp``
    (None values are skipped). ``recipe``: ``auto``, ``official`` or ``small`` (None: no recipe, as for
    evaluation), resolved with ``tune``/``resume`` and the dataset's size. ``choose_batch(cfg)``: the total batch
    for ``batch_size=auto`` (None: keep the recipe's). ``world_size``: processes that share the batch.
    """
    if isinstance(config, CheckedConfig):
        if overrides is not None:
            raise ValueError(  # a programming mistake, not a user's input
                "build_run_config 收到的是已经检查过的配置（CheckedConfig），不能再给 overrides。"
                "修复：把覆盖项交给 check_config(config, overrides)，再把它的结果交给 build_run_config。"
            )
        checked = config
    else:
        checked = check_config(config, overrides)
    ov, note = dict(checked.user), ""
    if recipe is not None:
        n_train = dataset.n_train if dataset is not None else None
        ov, note = merge_recipe(recipe, ov, tune=tune, resume=resume, n_train=n_train)
    if dataset is not None:
        _check_num_classes(checked.user.get("num_classes"), dataset)
        ov.update(dataset.overrides())
    ov.update({k: _SETTINGS[k](v) for k, v in (settings or {}).items() if v is not None})
    cfg = config_from_source(checked.source, ov)
    if checked.auto_batch and choose_batch is not None:
        cfg = _with_total_batch(cfg, choose_batch(cfg))
    _check_batch_split(cfg, world_size)
    # the one place where the batch-size rule is applied: to the batch this run really uses
    cfg, scaling = apply_batch_rule(cfg, cfg.data.batch_size, checked.explicit)
    return RunConfig(cfg, checked.explicit, scaling, note)


def _check_num_classes(explicit: int | None, dataset: DatasetInfo) -> None:
    names = dataset.class_names
    if explicit is not None and explicit != len(names):
        raise ConfigError(
            f"num_classes={explicit} 与数据集 {dataset.train_ann} 的类别数 {len(names)} 不一致"
            f"（{'、'.join(names[:10])}{'……' if len(names) > 10 else ''}）。请删掉 num_classes 覆盖，"
            f"让它按数据集自动设置，或改成 num_classes={len(names)}。"
        )


def _with_total_batch(cfg: Config, total: int) -> Config:
    if int(total) == cfg.data.batch_size:
        return cfg
    raw = copy.deepcopy(cfg.raw)
    set_dotted(raw, _BATCH_KEY, int(total))
    return config_from_dict(raw, cfg.name, milestone_note=cfg.milestone_note)


def _check_batch_split(cfg: Config, world_size: int) -> None:
    """Every process takes the same micro-batch: ``total_batch_size`` = micro-batch × ``accumulate`` × processes."""
    total, acc = cfg.data.batch_size, cfg.train.accumulate
    if total % (world_size * acc):
        raise ConfigError(
            f"total_batch_size={total} 不能被 GPU 数 {world_size} × accumulate {acc} 整除。请调整其中一个。"
        )
