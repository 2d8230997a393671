"""deimv2/config/run_config.py: the one frozen config of a run, built once (plain data: no dataset files, no torch).

The recipe goes under the user's overrides, the dataset and the run settings over them, ``batch_size=auto`` takes the
measured batch, and the batch-size rule is applied exactly once, keeping what the user set.
"""

import dataclasses
import doctest

import pytest

import deimv2.config.run_config as run_config
from deimv2.config.loader import load_config
from deimv2.config.recipes import merge_recipe
from deimv2.config.run_config import (
    CheckedConfig,
    DatasetInfo,
    RunConfig,
    build_run_config,
    check_config,
    take_auto_batch,
)
from deimv2.errors import ConfigError

DATASET = DatasetInfo("数据/train", "数据/train/a.json", "数据/valid", "数据/valid/a.json", ("猫", "狗"), n_train=8)


def test_without_recipe_dataset_or_batch_change_it_is_load_config():
    ov = {"epochs": 12, "DEIMTransformer.num_queries": 100}
    run = build_run_config("atto", ov)
    assert isinstance(run, RunConfig) and run.cfg == load_config("atto", ov)
    assert run.explicit == {"epoches", "DEIMTransformer.num_queries"} and run.recipe_note == ""
    assert not run.batch_scaling.applied


def test_the_recipe_goes_under_the_users_overrides():
    run = build_run_config("atto", {"batch_size": 4}, recipe="small")
    overrides, note = merge_recipe("small", {"batch_size": 4})
    assert run.cfg == load_config("atto", overrides)  # the same milestones as one load with the merged overrides
    assert run.cfg.data.batch_size == 4 and run.cfg.schedule.epochs == 40  # the user's batch, the recipe's epochs
    assert run.recipe_note == note and "recipe=small" in note
    assert run.explicit == {"train_dataloader.total_batch_size"}  # the recipe's keys are not the user's


def test_auto_recipe_decides_from_the_dataset_size_and_the_start():
    assert "→ small" in build_run_config("atto", recipe="auto", dataset=DATASET).recipe_note
    assert "→ official" in build_run_config("atto", recipe="auto", dataset=DATASET, tune=True).recipe_note
    assert "训练集大小未知" in build_run_config("atto", recipe="auto").recipe_note  # no dataset: size unknown


def test_the_dataset_sets_paths_and_classes():
    cfg = build_run_config("atto", dataset=DATASET).cfg
    assert cfg.num_classes == 2 and cfg.class_names == ["猫", "狗"] and cfg.remap_mscoco_category is False
    assert cfg.data.train_ann_file == "数据/train/a.json" and cfg.data.val_img_folder == "数据/valid"
    with pytest.raises(ConfigError, match="num_classes=3 与数据集 数据/train/a.json 的类别数 2 不一致"):
        build_run_config("atto", {"num_classes": 3}, dataset=DATASET)


def test_run_settings_are_cast_and_none_is_skipped():
    cfg = build_run_config("atto", settings={"output_dir": "运行 1", "seed": 7, "use_amp": None}).cfg
    assert cfg.train.output_dir == "运行 1" and cfg.train.seed == 7
    assert cfg.train.use_amp == load_config("atto").train.use_amp


def test_the_batch_rule_is_applied_once_and_keeps_explicit_keys():
    # S at batch 64: k = 64/32 = 2 (the official example): backbone 2.5e-5 -> 5e-5; the explicit head lr is kept
    run = build_run_config("s", {"batch_size": 64, "lr": 1e-3})
    lrs = [g["lr"] for g in run.cfg.raw["optimizer"]["params"] if "lr" in g]
    assert run.batch_scaling.applied and run.batch_scaling.k == 2
    assert 5e-5 in lrs and run.cfg.optimizer.lr == 1e-3
    assert run.cfg.raw["reference_batch_size"] == 64  # config.yaml is then a recipe for 64: loading scales nothing
    again = build_run_config(run.cfg.to_dict())
    assert not again.batch_scaling.applied and again.cfg == run.cfg


def test_choose_batch_is_asked_only_for_auto_and_the_rule_follows_it():
    asked = []

    def choose(cfg):
        asked.append(cfg.data.batch_size)
        return 64

    run = build_run_config("s", {"batch_size": "auto"}, choose_batch=choose)
    assert asked == [32] and run.cfg.data.batch_size == 64 and run.batch_scaling.k == 2  # scaled for the batch used
    assert run.explicit == frozenset()  # auto is not a value the user set
    assert build_run_config("s", {"batch_size": 16}, choose_batch=choose).cfg.data.batch_size == 16
    assert asked == [32]  # not asked without auto
    assert build_run_config("s", {"batch_size": "auto"}).cfg.data.batch_size == 32  # nobody to ask: the recipe's
    small = build_run_config(
        "atto", {"batch_size": "auto"}, recipe="small", choose_batch=lambda cfg: cfg.data.batch_size
    )
    assert small.cfg.data.batch_size == 8  # a CPU keeps the batch of the training recipe (small: 8), not the file's 128


def test_the_batch_must_split_over_processes_and_accumulation():
    with pytest.raises(ConfigError, match="total_batch_size=6 不能被 GPU 数 4 × accumulate 1 整除"):
        build_run_config("atto", {"batch_size": 6}, world_size=4)
    assert build_run_config("atto", {"batch_size": 8, "accumulate": 2}, world_size=4).cfg.data.batch_size == 8


def test_check_config_parses_once_and_checks_before_anything_else():
    checked = check_config("atto", ["epochs=3", "lr=1e-3"], {"lr": "2e-3"})  # keyword arguments win
    assert dict(checked.user) == {"epochs": 3, "lr": 2e-3} and checked.cfg.optimizer.lr == 2e-3
    assert checked.explicit == {"epoches", "optimizer.lr"}
    with pytest.raises(TypeError):
        checked.user["epochs"] = 4  # read-only
    with pytest.raises(ConfigError, match="未知的配置键"):
        check_config("atto", ["epocs=3"])
    with pytest.raises(ConfigError, match="eval_spatial_size"):
        check_config("atto", {"eval_spatial_size": [100, 100]})
    with pytest.raises(ValueError, match="check_config"):
        build_run_config(checked, ["epochs=4"])


def test_a_checked_config_is_built_from_its_source_not_reread(monkeypatch):
    checked = check_config("atto", {"epochs": 3})
    monkeypatch.setattr(run_config, "read_config_source", lambda *a: pytest.fail("read again"))
    monkeypatch.setattr(run_config, "parse_overrides", lambda *a: pytest.fail("parsed again"))
    assert build_run_config(checked, recipe="official").cfg.schedule.epochs == 3


def test_auto_is_taken_out_of_the_overrides():
    checked = check_config("atto", ["batch_size=auto", "epoches=3"], {"lr": 1e-4})
    assert checked.auto_batch and dict(checked.user) == {"epoches": 3, "lr": 1e-4}
    ov = {"train_dataloader.total_batch_size": "auto"}
    assert take_auto_batch(ov) and ov == {}
    assert check_config("atto", ["batch_size=8"]).auto_batch is False


def test_everything_is_frozen():
    run = build_run_config("atto")
    for obj, field in ((run, "cfg"), (run.batch_scaling, "rows"), (check_config("atto"), "user"), (DATASET, "n_train")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, field, None)
    assert isinstance(check_config("atto"), CheckedConfig)


def test_the_module_example_runs():
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner()
    report: list[str] = []
    for test in finder.find(run_config, "run_config", globs={}):
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.attempted >= 3 and result.failed == 0, "".join(report)
