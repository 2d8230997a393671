"""Training recipes (deimv2/recipes.py): the small recipe's overrides reach the config, are printed, lose to the
user's own settings; the CLI flag and the demo use them; an unknown name is a Chinese error."""

import pytest

from deimv2 import load_config
from deimv2.cli import main
from deimv2.errors import ConfigError
from deimv2.recipes import RECIPES, check_recipe, describe_recipe, merge_recipe, recipe_overrides

TINY = {
    "HGNetv2.pretrained": False,
    "eval_spatial_size": [96, 96],
    "num_workers": 0,
    "val_dataloader.num_workers": 0,
    "val_dataloader.total_batch_size": 4,
    "DEIMTransformer.num_queries": 30,
    "PostProcessor.num_top_queries": 30,
}


def test_small_recipe_reaches_the_config_for_40_epochs():
    ov, _ = merge_recipe("small", {"epochs": 40})
    cfg = load_config("atto", ov)
    # hand-worked for 40 epochs: flat 0.5·40 = 20, strong aug ends at 0.75·40 = 30, no-aug stage 0.15·40 = 6
    # (stop 34), matcher change 0.9·40 = 36
    assert cfg.milestones["epoches"] == 40
    assert cfg.milestones["flat_epoch"] == 20
    assert cfg.milestones["policy_epoch"] == [1, 20, 30]
    assert cfg.milestones["no_aug_epoch"] == 6
    assert cfg.milestones["stop_epoch"] == 34
    assert cfg.milestones["matcher_change_epoch"] == 36
    assert cfg.data.batch_size == 4
    assert cfg.raw["scale_lr"] is False
    assert cfg.raw["lr_gamma"] == 0.1
    assert cfg.raw["ema"]["decay"] == 0.995 and cfg.raw["ema"]["warmups"] == 100
    # the backbone groups have no lr of their own: they follow optimizer.lr (official: half of it)
    assert [g.get("lr") for g in cfg.raw["optimizer"]["params"]] == [None, None, None]
    # the model and the criterion are the official ones
    official = load_config("atto")
    assert cfg.raw["DEIMTransformer"] == official.raw["DEIMTransformer"]
    assert cfg.raw["DEIMCriterion"]["weight_dict"] == official.raw["DEIMCriterion"]["weight_dict"]


def test_small_recipe_rounds_short_budgets_half_up():
    ov = recipe_overrides("small", 15)
    # 15 epochs: flat round(7.5) = 8, aug stop round(11.25) = 11, no-aug round(2.25) = 2 -> stop 13, matcher 14
    assert ov["flat_epoch"] == 8
    assert ov["train_dataloader.dataset.transforms.policy.epoch"] == [1, 8, 11]
    assert ov["no_aug_epoch"] == 2 and ov["train_dataloader.collate_fn.stop_epoch"] == 13
    assert ov["DEIMCriterion.matcher.matcher_change_epoch"] == 14
    load_config("atto", {**ov})  # a consistent set of milestones
    for e in (1, 2, 3, 5):
        load_config("atto", merge_recipe("small", {"epochs": e})[0])


def test_user_overrides_win_over_the_recipe_and_are_named():
    ov, text = merge_recipe("small", {"epochs": 40, "batch_size": 8, "lr": 0.001})
    cfg = load_config("atto", ov)
    assert cfg.data.batch_size == 8
    assert cfg.optimizer.lr == 0.001
    assert "被你的设置 8 覆盖" in text and "被你的设置 0.001 覆盖" in text


def test_official_recipe_changes_nothing():
    assert recipe_overrides("official", 40) == {}
    ov, text = merge_recipe("official", {"epochs": 40})
    assert load_config("atto", ov).raw == load_config("atto", {"epochs": 40}).raw
    assert "official" in text and set(RECIPES) == {"official", "small"}
    assert check_recipe(None) == "official"


def test_unknown_recipe_is_a_chinese_error():
    with pytest.raises(ConfigError, match="未知的训练配方.*official.*small"):
        check_recipe("large")
    with pytest.raises(ConfigError, match="未知的训练配方"):
        describe_recipe("Small")


def test_train_prints_and_applies_the_recipe(tiny_coco, tmp_path, capsys):
    from deimv2.engine.trainer import train

    out = tmp_path / "配方 small"
    train("atto", data=tiny_coco, output_dir=out, overrides=TINY, epochs=1, max_iters_per_epoch=1, recipe="small",
          progress=False)  # fmt: skip
    text = capsys.readouterr().out
    assert "训练配方 recipe=small" in text and "EMA decay 0.995" in text
    assert "每步 batch 4" in text  # the recipe's batch size was used
    saved = load_config(out / "config.yaml")
    assert saved.raw["lr_gamma"] == 0.1 and saved.raw["ema"]["decay"] == 0.995


def test_cli_recipe_flag(tiny_coco, tmp_path, capsys, monkeypatch):
    import deimv2.engine.trainer as trainer

    seen = {}
    monkeypatch.setattr(trainer, "train", lambda *a, **k: seen.update(k) or {})
    assert main(["train", "-c", "atto", "--data", str(tiny_coco), "--recipe", "small"]) == 0
    assert seen["recipe"] == "small"
    assert main(["train", "-c", "atto", "--data", str(tiny_coco)]) == 0
    assert seen["recipe"] is None  # default: official


def test_cli_unknown_recipe_fails_before_reading_data(tmp_path, capsys):
    code = main(["train", "-c", "atto", "--data", str(tmp_path / "没有 数据"), "--recipe", "huge"])
    assert code != 0
    err = capsys.readouterr()
    assert "未知的训练配方" in err.out + err.err and "Traceback" not in err.out + err.err


def test_demo_uses_the_small_recipe():
    from deimv2 import demo

    assert demo.DEMO_RECIPE == "small"
    assert demo.FULL_SCHEDULE["batch_size"] == recipe_overrides("small")["train_dataloader.total_batch_size"]
