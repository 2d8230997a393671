"""Training recipes (deimv2/config/recipes.py): the small recipe's overrides reach the config, are printed, lose to the
user's own settings; the CLI flag and the demo use them; an unknown name is a Chinese error."""

import pytest
from helpers.tinydata import TINY_TRAIN

from deimv2 import load_config
from deimv2.cli import main
from deimv2.config.recipes import (
    RECIPES,
    SMALL_DATASET_IMAGES,
    SMALL_DEFAULT_EPOCHS,
    check_recipe,
    describe_recipe,
    merge_recipe,
    recipe_overrides,
    resolve_auto,
)
from deimv2.errors import ConfigError

TINY = TINY_TRAIN


def test_small_recipe_reaches_the_config_for_40_epochs():
    ov, _ = merge_recipe("small", {"epochs": 40})
    cfg = load_config("atto", ov)
    # the official epoch rule for 40 epochs with the recipe's no_aug_epoch = 40 // 4 = 10, worked by hand:
    # N = 40 - 10 = 30; flat = 4 + 30 // 2 = 19; policy [4, 19, round(30 x 400 / 468) = round(25.6) = 26];
    # stop = N = 30; matcher change = max(19, floor(0.9 x 30)) = 27
    assert cfg.milestones["epoches"] == 40
    assert cfg.milestones["flat_epoch"] == 19
    assert cfg.milestones["policy_epoch"] == [4, 19, 26]
    assert cfg.milestones["no_aug_epoch"] == 10
    assert cfg.milestones["stop_epoch"] == 30
    assert cfg.milestones["matcher_change_epoch"] == 27
    assert cfg.data.batch_size == 8
    assert cfg.raw["scale_lr"] is False and cfg.raw["epoch_rule"] == "official"
    # learning rates, EMA, model and criterion are the official ones
    official = load_config("atto")
    for key in ("optimizer", "lr_gamma", "ema", "DEIMTransformer", "DEIMCriterion", "HGNetv2"):
        if key != "DEIMCriterion":
            assert cfg.raw[key] == official.raw[key], key
    assert cfg.raw["DEIMCriterion"]["weight_dict"] == official.raw["DEIMCriterion"]["weight_dict"]


def test_small_recipe_without_epochs_uses_its_default():
    cfg = load_config("atto", merge_recipe("small", {})[0])
    assert cfg.milestones["epoches"] == SMALL_DEFAULT_EPOCHS
    for e in range(1, 301):  # a quarter without strong augmentation; under 4 epochs the short-budget rule (half)
        m = load_config("atto", merge_recipe("small", {"epochs": e})[0]).milestones
        assert m["epoches"] == e and m["no_aug_epoch"] == (e // 4 if e >= 4 else e // 2), e
        assert m["stop_epoch"] + m["no_aug_epoch"] == e


def test_user_overrides_win_over_the_recipe_and_are_named():
    ov, text = merge_recipe("small", {"epochs": 40, "batch_size": 4, "scale_lr": True})
    cfg = load_config("atto", ov)
    assert cfg.data.batch_size == 4 and cfg.raw["scale_lr"] is True
    assert "被你的设置 4 覆盖" in text and "被你的设置 True 覆盖" in text
    assert "覆盖" not in merge_recipe("small", {"epochs": 40, "batch_size": 8})[1]  # same value: nothing replaced


def test_official_recipe_changes_nothing():
    assert recipe_overrides("official", 40) == {}
    ov, text = merge_recipe("official", {"epochs": 40})
    assert load_config("atto", ov).raw == load_config("atto", {"epochs": 40}).raw
    assert "official" in text and set(RECIPES) == {"auto", "official", "small"}
    assert check_recipe(None) == "auto"


def test_auto_resolves_from_what_the_run_is():
    small = resolve_auto(n_train=SMALL_DATASET_IMAGES)
    assert small.recipe == "small" and small.overrides == {} and f"{SMALL_DATASET_IMAGES} 张" in small.why
    for choice in (
        resolve_auto(n_train=SMALL_DATASET_IMAGES + 1),
        resolve_auto(n_train=None),
        resolve_auto(tune=True, n_train=10),
        resolve_auto(resume=True, n_train=10),
    ):
        assert choice.recipe == "official" and choice.overrides == {"scale_lr": False}, choice
    assert "微调" in resolve_auto(tune=True).why and "接着训练" in resolve_auto(resume=True).why


def test_auto_merges_like_the_recipe_it_picks_and_the_user_wins():
    ov, note = merge_recipe(None, {"epochs": 40}, n_train=160)
    assert ov == merge_recipe("small", {"epochs": 40})[0]
    assert note.startswith("训练配方 recipe=auto → small") and "batch size 8" in note
    ov, note = merge_recipe("auto", {"batch_size": 16}, tune=True, n_train=160)
    cfg = load_config("atto", ov)
    assert cfg.raw["scale_lr"] is False and cfg.data.batch_size == 16 and cfg.milestones["epoches"] == 500
    assert note.count("\n") == 0 and "official" in note  # one line
    ov, _ = merge_recipe("auto", {"scale_lr": True}, tune=True)
    assert ov["scale_lr"] is True  # the official batch rule stays one setting away
    # a user who picks the epoch rule keeps their schedule (the tiny runs of notebooks 05-09: demo_overrides())
    from deimv2.tutorial.demo import demo_overrides

    user = {**demo_overrides(160, 4), "epochs": 2}
    ov, note = merge_recipe(None, user, n_train=160)
    assert load_config("atto", ov).raw == load_config("atto", {**user, "scale_lr": False}).raw
    assert "→ official" in note
    _, note = merge_recipe(None, {"train_dataloader.collate_fn.stop_epoch": 101}, n_train=160)
    assert "→ official" in note


def test_the_low_vram_command_without_recipe_trains_exactly_as_recipe_small():
    """The command a small-GPU user types (batch 16, 40 epochs, from scratch, 240 images) gets, with no --recipe,
    the very config of ``--recipe small``: the same training, so at least the AP50 that ``small`` reaches."""
    from deimv2.config.loader import parse_overrides

    user = parse_overrides(["epochs=40", "train_dataloader.total_batch_size=16", "HGNetv2.pretrained=false"])
    auto, note = merge_recipe(None, user, n_train=240)
    small, _ = merge_recipe("small", user, n_train=240)
    assert auto == small
    cfg = load_config("atto", auto)
    assert cfg.raw == load_config("atto", small).raw
    assert cfg.raw["scale_lr"] is False and cfg.data.batch_size == 16  # the user's batch, LRs not divided by 8
    assert "→ small" in note


def test_unknown_recipe_is_a_chinese_error():
    with pytest.raises(ConfigError, match="未知的训练配方.*auto.*official.*small"):
        check_recipe("large")
    with pytest.raises(ConfigError, match="未知的训练配方"):
        describe_recipe("Small")


def test_train_prints_and_applies_the_recipe(tiny_coco, tmp_path, capsys):
    from deimv2.engine.api import train

    out = tmp_path / "配方 small"
    train("atto", data=tiny_coco, output_dir=out, overrides=TINY, epochs=1, max_iters_per_epoch=1, recipe="small",
          progress=False)  # fmt: skip
    text = capsys.readouterr().out
    head = next(line for line in text.splitlines() if "训练配方" in line)  # one line on the console
    assert "recipe=small" in head and "total_batch_size=8" in head and "epoch_rule=official" in head
    assert "recipe.txt" in head and "batch size 8：" not in text  # the reasons go to the run's recipe.txt
    reasons = (out / "recipe.txt").read_text(encoding="utf-8")
    assert "batch size 8：" in reasons and "官方 Customizing Epoch 规则" in reasons
    assert "每步 batch 8" in text  # the recipe's batch size was used
    saved = load_config(out / "config.yaml")
    assert saved.raw["scale_lr"] is False and saved.raw["epoch_rule"] == "official"


def test_train_default_is_auto_and_says_why(tiny_coco, tmp_path, capsys):
    from deimv2.engine.api import train

    out = tmp_path / "默认 配方"
    train("atto", data=tiny_coco, output_dir=out, overrides={**TINY, "batch_size": 4}, epochs=1, max_iters_per_epoch=1,
          progress=False)  # fmt: skip
    text = capsys.readouterr().out
    assert "训练配方 recipe=auto → small：从头训练，训练集 8 张" in text
    recipe_lines = [line for line in text.splitlines() if "训练配方" in line or line.startswith("  设置：")]
    assert len(recipe_lines) == 2 and "batch_size=8（被你的设置 4 覆盖）" in recipe_lines[1]  # two lines in all
    assert "每步 batch 4" in text and "但 scale_lr=false" in text  # the user's batch, not rescaled
    assert load_config(out / "config.yaml").raw["scale_lr"] is False


def test_cli_recipe_flag(tiny_coco, tmp_path, capsys, monkeypatch):
    import deimv2.engine.api as api

    seen = {}
    monkeypatch.setattr(api, "train", lambda *a, **k: seen.update(k) or {})
    assert main(["train", "-c", "atto", "--data", str(tiny_coco), "--recipe", "small"]) == 0
    assert seen["recipe"] == "small"
    assert main(["train", "-c", "atto", "--data", str(tiny_coco)]) == 0
    assert seen["recipe"] is None  # default: auto


def test_cli_unknown_recipe_fails_before_reading_data(tmp_path, capsys):
    code = main(["train", "-c", "atto", "--data", str(tmp_path / "没有 数据"), "--recipe", "huge"])
    assert code != 0
    err = capsys.readouterr()
    assert "未知的训练配方" in err.out + err.err and "Traceback" not in err.out + err.err


def test_demo_uses_the_small_recipe():
    from deimv2.tutorial import demo

    assert demo.DEMO_RECIPE == "small"
    assert demo.FULL_SCHEDULE["batch_size"] == recipe_overrides("small")["train_dataloader.total_batch_size"]


def test_demo_overrides_leave_the_schedule_to_the_recipe():
    from deimv2.tutorial.demo import demo_overrides

    with_recipe = demo_overrides(256, 8, recipe="small")
    assert "epoch_rule" not in with_recipe and "scale_lr" not in with_recipe
    plain = demo_overrides(256, 8)  # the tiny runs of notebooks 05-09
    assert plain["epoch_rule"] == "proportional" and plain["scale_lr"] is False


def test_demo_training_is_the_recorded_trial():
    """README's `deimv2 demo` line reads benchmarks/results/recipes/small_na10_e40.json: same config exactly."""
    import importlib.util
    from pathlib import Path

    from deimv2.tutorial import demo

    spec = importlib.util.spec_from_file_location(
        "bench_recipes", Path(__file__).parents[2] / "benchmarks" / "recipes.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    trial = bench.TRIALS["small_na10_e40"]
    s = demo.FULL_SCHEDULE
    ours = merge_recipe(demo.DEMO_RECIPE, {**demo.demo_overrides(s["size"], s["batch_size"], recipe=demo.DEMO_RECIPE),
                                           "epochs": s["epochs"]})[0]  # fmt: skip
    theirs = merge_recipe(  # what benchmarks/recipes.py gives train(): its overrides, and the recipe on top
        trial["recipe"],
        {**demo.demo_overrides(trial["size"], recipe=trial["recipe"]), "epochs": trial["epochs"], **trial["update"]},
    )[0]
    assert load_config("atto", ours).raw == load_config("atto", theirs).raw
