"""deimv2/engine/api.py: a train() call reads its config once, and the trainer gets, and keeps, the built config."""

import copy
from collections import Counter

import pytest
import torch
from helpers.tinydata import TINY_TRAIN

import deimv2.config.loader as loader
import deimv2.config.run_config as run_config
from deimv2.config.run_config import build_run_config
from deimv2.engine.api import open_trainer, train
from deimv2.engine.setup import read_dataset
from deimv2.engine.trainer import Trainer

TINY = {**TINY_TRAIN, "val_dataloader.total_batch_size": 4}


@pytest.fixture
def seen(monkeypatch):
    """``Trainer.fit`` replaced by one that keeps the trainer and trains nothing."""
    seen = {}

    def fit(self, callback=None):
        seen["trainer"] = self
        return {}

    monkeypatch.setattr(Trainer, "fit", fit)
    return seen


def _count(monkeypatch, calls: Counter, module, name: str) -> None:
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls[name] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)


def test_train_reads_the_config_and_parses_the_overrides_once(tiny_coco, tmp_path, monkeypatch, seen):
    calls: Counter = Counter()
    for module, name in (
        (loader, "load_config"),
        (loader, "parse_overrides"),
        (run_config, "parse_overrides"),
        (run_config, "read_config_source"),
        (run_config, "config_from_source"),
    ):
        _count(monkeypatch, calls, module, name)
    overrides = [f"{k}={v}" for k, v in TINY.items()]
    train("atto", data=tiny_coco, output_dir=tmp_path / "run", overrides=overrides, epochs=2, progress=False)
    assert calls["read_config_source"] == 1  # the YAML (and its __include__ chain) is read once
    assert calls["parse_overrides"] == 2  # the -u list and the keyword arguments, each parsed once
    # the typed config is built twice from that one reading: checked before the dataset is opened, then with the
    # recipe (which needs the dataset's size); nothing calls load_config or Config.replace on the way
    assert calls["config_from_source"] == 2 and calls["load_config"] == 0
    assert seen["trainer"].cfg.schedule.epochs == 2


def test_the_trainer_sees_the_config_the_builder_gives(tiny_coco, tmp_path, seen):
    out = tmp_path / "运行 1"
    train("atto", data=tiny_coco, output_dir=out, overrides=TINY, epochs=3, seed=5, lr="1e-3", progress=False)
    user = build_run_config(
        "atto",
        {**TINY, "epochs": 3, "lr": 1e-3},
        dataset=read_dataset(tiny_coco),
        settings={"output_dir": out, "seed": 5},
        recipe="auto",
    )
    t = seen["trainer"]
    assert t.run == user and t.cfg == user.cfg
    assert t.cfg.schedule.epochs == 3 and t.cfg.optimizer.lr == 1e-3 and t.cfg.train.seed == 5
    assert "recipe=auto → small" in t.run.recipe_note  # 8 training images: the small recipe


def test_the_trainer_does_not_rewrite_the_config(tiny_coco, tmp_path):
    # batch 2 against Atto's 128 with the rule on: the old trainer rescaled the config itself at set-up
    ov = {**TINY, "batch_size": 2, "scale_lr": True, "epochs": 1}
    run = build_run_config("atto", ov, dataset=read_dataset(tiny_coco), settings={"output_dir": tmp_path / "o"})
    before = copy.deepcopy(run.cfg.to_dict())
    assert run.batch_scaling.applied
    t = open_trainer(run, torch.device("cpu"), progress=False, max_iters_per_epoch=1)
    assert t.run is run and t.cfg is run.cfg and t.batch_scaling is run.batch_scaling
    # the rule was applied once, by the builder: the optimizer starts from the built config's learning rates
    assert t.optimizer.param_groups[-1]["initial_lr"] == run.cfg.optimizer.lr == pytest.approx(0.002 * 2 / 128)
    t.fit()
    assert t.cfg is run.cfg and run.cfg.to_dict() == before
