"""Epoch milestones: the official "Customizing Epoch" rule (deimv2.config.epoch_rule), hand-worked values."""

import pytest

import deimv2
from deimv2.config.epoch_rule import (
    derive_epoch_milestones,
    official_epoch_milestones,
    proportional_epoch_milestones,
)
from deimv2.config.loader import format_milestones
from deimv2.errors import ConfigError

# the official configs' values (configs/deimv2/*.yml of Intellindust-AI-Lab/DEIMv2)
S_RECIPE = {
    "epoches": 132,
    "flat_epoch": 64,
    "no_aug_epoch": 12,
    "policy_epoch": [4, 64, 120],
    "stop_epoch": 120,
    "mixup_epochs": [4, 64],
    "copyblend_epochs": [4, 120],
    "matcher_change_epoch": 100,
}
ATTO_RECIPE = {
    "epoches": 500,
    "flat_epoch": 250,
    "no_aug_epoch": 32,
    "policy_epoch": [4, 250, 400],
    "stop_epoch": 468,
    "mixup_epochs": [40000, 15000],
    "copyblend_epochs": [40000, 15000],
    "matcher_change_epoch": 450,
}
N_RECIPE = {
    "epoches": 160,
    "flat_epoch": 7800,
    "no_aug_epoch": 12,
    "policy_epoch": [4, 78, 148],
    "stop_epoch": 148,
    "mixup_epochs": [4, 78],
    "copyblend_epochs": [4, 78],
    "matcher_change_epoch": 136,
}


def _ms(**kw):
    return {"short_budget": False, **kw}


def test_readme_worked_example_s_32():
    # official README 3.4: fine-tune S for 20 epochs -> epoches 32
    assert deimv2.load_config("s", {"epoches": 32}).milestones == {
        "epoches": 32,
        "flat_epoch": 14,
        "no_aug_epoch": 12,
        "policy_epoch": [4, 14, 20],
        "stop_epoch": 20,
        "mixup_epochs": [4, 14],
        "copyblend_epochs": [4, 20],
        "matcher_change_epoch": 18,
    }


def test_seed_worked_example_s_62():
    # the seed's hand-set numbers: flat 29, no_aug 12, policy [4, 29, 50], stop 50
    m = deimv2.load_config("s", {"epoches": 62}).milestones
    assert (m["flat_epoch"], m["no_aug_epoch"], m["policy_epoch"], m["stop_epoch"]) == (29, 12, [4, 29, 50], 50)
    assert m["mixup_epochs"] == [4, 29] and m["copyblend_epochs"] == [4, 50]
    assert m["matcher_change_epoch"] == 45  # floor(0.9 * 50)
    # the seed's explicit command gives the same schedule
    seed = deimv2.load_config("s", ["epoches=62", "flat_epoch=29", "no_aug_epoch=12"]).milestones
    assert seed == m


@pytest.mark.parametrize(
    "variant,no_aug", [("s", 12), ("m", 12), ("l", 8), ("x", 8), ("n", 12), ("atto", 32), ("femto", 32), ("pico", 32)]
)
def test_no_aug_epoch_is_the_variants(variant, no_aug):
    m = deimv2.load_config(variant, epochs=100).milestones
    assert m["no_aug_epoch"] == no_aug and m["stop_epoch"] == 100 - no_aug
    assert m["flat_epoch"] == (7800 if variant == "n" else 4 + (100 - no_aug) // 2)


@pytest.mark.parametrize("variant", ["s", "m", "l", "x", "n", "atto", "femto", "pico"])
def test_recipe_total_keeps_official_values(variant):
    cfg = deimv2.load_config(variant)
    assert deimv2.load_config(variant, epochs=cfg.schedule.epochs).milestones == cfg.milestones


def test_l_and_x_rule():
    # L/X: no_aug 8; X's official config is the rule at N = 50 (flat 29, matcher 45)
    m = deimv2.load_config("x", epochs=58).milestones
    assert (m["flat_epoch"], m["policy_epoch"], m["matcher_change_epoch"]) == (29, [4, 29, 50], 45)
    l_recipe = {
        "epoches": 68,
        "flat_epoch": 34,
        "no_aug_epoch": 8,
        "policy_epoch": [4, 34, 60],
        "stop_epoch": 60,
        "mixup_epochs": [4, 34],
        "copyblend_epochs": [4, 60],
        "matcher_change_epoch": 50,
    }
    m = official_epoch_milestones(38, l_recipe)
    assert m == _ms(
        epoches=38,
        flat_epoch=19,
        no_aug_epoch=8,
        policy_epoch=[4, 19, 30],
        stop_epoch=30,
        mixup_epochs=[4, 19],
        copyblend_epochs=[4, 30],
        matcher_change_epoch=27,
    )


def test_atto_departures_carried_over():
    # policy ends at 400 of 468 -> round(68 * 400 / 468) = round(58.1) = 58; MixUp/CopyBlend stay off
    m = official_epoch_milestones(100, ATTO_RECIPE)
    assert m == _ms(
        epoches=100,
        flat_epoch=38,
        no_aug_epoch=32,
        policy_epoch=[4, 38, 58],
        stop_epoch=68,
        mixup_epochs=[40000, 15000],
        copyblend_epochs=[40000, 15000],
        matcher_change_epoch=61,
    )


def test_n_departures_carried_over():
    # N: constant LR (flat_epoch 7800 stays), CopyBlend over the first half only ([4, F])
    m = official_epoch_milestones(40, N_RECIPE)
    assert m == _ms(
        epoches=40,
        flat_epoch=7800,
        no_aug_epoch=12,
        policy_epoch=[4, 18, 28],
        stop_epoch=28,
        mixup_epochs=[4, 18],
        copyblend_epochs=[4, 18],
        matcher_change_epoch=25,
    )


# short budget: E < 2 * no_aug -> no_aug = E // 2, N = E - E // 2; start = min(4, N), F = min(start + N // 2, N)
SHORT_S = {
    1: _ms(
        epoches=1,
        flat_epoch=1,
        no_aug_epoch=0,
        policy_epoch=[1, 1, 1],
        stop_epoch=1,
        mixup_epochs=[1, 1],
        copyblend_epochs=[1, 1],
        matcher_change_epoch=1,
        short_budget=True,
    ),
    2: _ms(
        epoches=2,
        flat_epoch=1,
        no_aug_epoch=1,
        policy_epoch=[1, 1, 1],
        stop_epoch=1,
        mixup_epochs=[1, 1],
        copyblend_epochs=[1, 1],
        matcher_change_epoch=1,
        short_budget=True,
    ),
    5: _ms(
        epoches=5,
        flat_epoch=3,
        no_aug_epoch=2,
        policy_epoch=[3, 3, 3],
        stop_epoch=3,
        mixup_epochs=[3, 3],
        copyblend_epochs=[3, 3],
        matcher_change_epoch=3,
        short_budget=True,
    ),
    12: _ms(
        epoches=12,
        flat_epoch=6,
        no_aug_epoch=6,
        policy_epoch=[4, 6, 6],
        stop_epoch=6,
        mixup_epochs=[4, 6],
        copyblend_epochs=[4, 6],
        matcher_change_epoch=6,
        short_budget=True,
    ),
    13: _ms(
        epoches=13,
        flat_epoch=7,
        no_aug_epoch=6,
        policy_epoch=[4, 7, 7],
        stop_epoch=7,
        mixup_epochs=[4, 7],
        copyblend_epochs=[4, 7],
        matcher_change_epoch=7,
        short_budget=True,
    ),
    23: _ms(
        epoches=23,
        flat_epoch=10,
        no_aug_epoch=11,
        policy_epoch=[4, 10, 12],
        stop_epoch=12,
        mixup_epochs=[4, 10],
        copyblend_epochs=[4, 12],
        matcher_change_epoch=10,
        short_budget=True,
    ),
    24: _ms(
        epoches=24,
        flat_epoch=10,
        no_aug_epoch=12,
        policy_epoch=[4, 10, 12],
        stop_epoch=12,
        mixup_epochs=[4, 10],
        copyblend_epochs=[4, 12],
        matcher_change_epoch=10,
    ),
}


@pytest.mark.parametrize("epochs", sorted(SHORT_S))
def test_short_budget_edges(epochs):
    assert official_epoch_milestones(epochs, S_RECIPE) == SHORT_S[epochs]
    m = deimv2.load_config("s", epochs=epochs).milestones
    assert m == {k: v for k, v in SHORT_S[epochs].items() if k != "short_budget"}


def test_short_budget_is_printed():
    text = format_milestones(deimv2.load_config("s", epochs=13))
    assert "预算偏短" in text and "13 // 2 = 6" in text and "N = 13 − 6 = 7" in text
    assert "预算偏短" not in format_milestones(deimv2.load_config("s", epochs=32))
    assert "Customizing Epoch" in format_milestones(deimv2.load_config("s", epochs=32))


@pytest.mark.parametrize("recipe", [S_RECIPE, ATTO_RECIPE, N_RECIPE])
def test_valid_for_every_epoch_count(recipe):
    for e in range(1, 301):
        d = official_epoch_milestones(e, recipe)
        n, a = d["stop_epoch"], d["no_aug_epoch"]
        e0, e1, e2 = d["policy_epoch"]
        assert n + a == e and n >= 1 and a <= n
        assert a == (recipe["no_aug_epoch"] if e >= 2 * recipe["no_aug_epoch"] else e // 2)
        assert 1 <= e0 <= e1 <= e2 <= n
        assert e1 <= d["matcher_change_epoch"] <= n
        for key in ("mixup_epochs", "copyblend_epochs"):
            lo, hi = d[key]
            assert (lo, hi) == (40000, 15000) if recipe is ATTO_RECIPE else 0 <= lo <= hi <= n
    with pytest.raises(ValueError):
        official_epoch_milestones(0, recipe)


def test_explicit_no_aug_and_flat_feed_the_rule():
    m = deimv2.load_config("s", ["epochs=40", "no_aug_epoch=4"]).milestones
    assert (m["no_aug_epoch"], m["stop_epoch"], m["flat_epoch"], m["policy_epoch"]) == (4, 36, 22, [4, 22, 36])
    m = deimv2.load_config("s", ["epochs=40", "flat_epoch=10"]).milestones
    assert (m["flat_epoch"], m["policy_epoch"], m["mixup_epochs"]) == (10, [4, 10, 28], [4, 10])
    with pytest.raises(ConfigError, match="no_aug_epoch"):
        deimv2.load_config("s", ["epochs=10", "no_aug_epoch=10"])


def test_proportional_rule_is_the_seed_rule():
    # kept as epoch_rule=proportional (the bundled demo was measured with it)
    assert proportional_epoch_milestones(66, S_RECIPE) == _ms(
        epoches=66,
        flat_epoch=32,
        no_aug_epoch=6,
        policy_epoch=[2, 32, 60],
        stop_epoch=60,
        mixup_epochs=[2, 32],
        copyblend_epochs=[2, 60],
        matcher_change_epoch=50,
    )
    m = deimv2.load_config("s", {"epoches": 62, "epoch_rule": "proportional"}).milestones
    assert (m["flat_epoch"], m["no_aug_epoch"]) == (30, 6)
    with pytest.raises(ConfigError, match="epoch_rule"):
        deimv2.load_config("s", {"epoches": 62, "epoch_rule": "linear"})
    with pytest.raises(ValueError):
        derive_epoch_milestones(10, S_RECIPE, rule="nope")
