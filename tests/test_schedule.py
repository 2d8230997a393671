"""Flat-cosine LR schedule (hand-worked values) and epoch-milestone derivation."""
import json
from pathlib import Path

import pytest
import torch

from deimv2.engine.schedule import FlatCosineLRScheduler, derive_epoch_milestones, flat_cosine_lr

S_RECIPE = dict(epoches=132, flat_epoch=64, no_aug_epoch=12, policy_epoch=[4, 64, 120], stop_epoch=120,
                mixup_epochs=[4, 64], copyblend_epochs=[4, 120], matcher_change_epoch=100)
ATTO_RECIPE = dict(epoches=500, flat_epoch=250, no_aug_epoch=32, policy_epoch=[4, 250, 400], stop_epoch=468,
                   mixup_epochs=[40000, 15000], copyblend_epochs=[40000, 15000], matcher_change_epoch=450)
N_RECIPE = dict(epoches=160, flat_epoch=7800, no_aug_epoch=12, policy_epoch=[4, 78, 148], stop_epoch=148,
                mixup_epochs=[4, 78], copyblend_epochs=[4, 78], matcher_change_epoch=136)


def _optimizer(lrs=(1.0, 0.1)):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    return torch.optim.AdamW(groups, lr=lrs[0])


def _sched(opt, **kw):
    args = dict(lr_gamma=0.5, iter_per_epoch=10, total_epochs=10, warmup_iter=20, flat_epochs=4, no_aug_epochs=2)
    args.update(kw)
    return FlatCosineLRScheduler(opt, **args)


def test_hand_worked_lr_values():
    # total 100 iters, warmup 20, flat until 40, cosine over (40, 80), min_lr after 80; min = 0.5 * base
    opt = _optimizer()
    s = _sched(opt)
    expected = {
        0: 0.0,
        10: 0.25,                 # (10/20)^2
        20: 1.0,                  # end of warmup
        30: 1.0, 40: 1.0,         # flat
        50: 0.9267766952966369,   # 0.5 + 0.5 * 0.5 * (1 + cos(pi/4))
        60: 0.75,                 # 0.5 + 0.5 * 0.5 * (1 + cos(pi/2))
        80: 0.5, 99: 0.5, 150: 0.5,
    }
    for it, lr in expected.items():
        s.step(it)
        assert opt.param_groups[0]["lr"] == pytest.approx(lr, abs=1e-12), it
        assert opt.param_groups[1]["lr"] == pytest.approx(lr * 0.1, abs=1e-12), it
    assert s.get_last_lr() == [pytest.approx(0.5), pytest.approx(0.05)]


def test_flat_branch_first_keeps_constant_lr():
    # N recipe: flat_epoch 7800 > epochs, so after warmup the LR never decays (not even in no-aug)
    opt = _optimizer((8e-4,))
    s = FlatCosineLRScheduler(opt, lr_gamma=1.0, iter_per_epoch=10, total_epochs=160, warmup_iter=2000,
                              flat_epochs=7800, no_aug_epochs=12)
    assert s.lr_at(1000)[0] == pytest.approx(8e-4 * 0.25)
    # 1480 iters = epoches - no_aug; 1600 = total: still the base LR
    for it in (2000, 2001, 1480 + 2000, 5000, 10**6):
        assert s.lr_at(it)[0] == 8e-4
    # same with lr_gamma 0.5: still constant because the flat branch is tested before the no-aug one
    s2 = FlatCosineLRScheduler(_optimizer((8e-4,)), lr_gamma=0.5, iter_per_epoch=10, total_epochs=160,
                               warmup_iter=20, flat_epochs=7800, no_aug_epochs=12)
    assert s2.lr_at(1590)[0] == 8e-4


def test_zero_warmup_and_degenerate_cosine():
    assert flat_cosine_lr(0, 1.0, 0.5, 100, 0, 40, 20) == 1.0
    # flat end == cosine end: no division by zero, jumps to min_lr
    assert flat_cosine_lr(81, 1.0, 0.5, 100, 10, 80, 20) == 0.5


def test_initial_lr_is_kept_from_group():
    opt = _optimizer()
    opt.param_groups[0]["initial_lr"] = 2.0  # e.g. restored from an optimizer state_dict
    s = _sched(opt)
    assert s.base_lrs == [2.0, 0.1] and s.min_lrs == [1.0, 0.05]


def test_state_dict_resume_is_exact():
    opt = _optimizer()
    s = _sched(opt)
    for it in range(58):
        s.step(it)
    state = s.state_dict()
    opt2 = _optimizer((5.0, 5.0))
    s2 = _sched(opt2, lr_gamma=0.1, warmup_iter=1)  # different settings are overwritten by the state
    s2.load_state_dict(state)
    assert s2.last_iter == 57
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    for it in range(58, 100):
        s.step(it)
        s2.step(it)
        assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]


def test_matches_official_function():
    """Every iteration of three settings vs the official ``flat_cosine_schedule`` (benchmarks/make_golden.py)."""
    path = Path(__file__).resolve().parent / "fixtures" / "official" / "lr_schedule.json"
    rows = json.loads(path.read_text(encoding="utf-8"))["flat_cosine_schedule"]
    assert len(rows) == 3
    for r in rows:
        ours = [flat_cosine_lr(it, r["init_lr"], r["min_lr"], r["total"], r["warmup"], r["flat"], r["no_aug"])
                for it in r["iters"]]
        assert ours == r["lr"]


# ---------------------------------------------------------------------------- milestones
@pytest.mark.parametrize("recipe", [S_RECIPE, ATTO_RECIPE, N_RECIPE])
def test_official_epochs_reproduce_recipe(recipe):
    assert derive_epoch_milestones(recipe["epoches"], recipe) == recipe


def test_halved_s():
    assert derive_epoch_milestones(66, S_RECIPE) == dict(
        epoches=66, flat_epoch=32, no_aug_epoch=6, policy_epoch=[2, 32, 60], stop_epoch=60,
        mixup_epochs=[2, 32], copyblend_epochs=[2, 60], matcher_change_epoch=50)


def test_s_10_epochs_hand_worked():
    # s = 10/132: stop r(9.09)=9, e0 r(0.30)=0 -> 1, e1 r(4.85)=5, e2 r(9.09)=9, flat 5, matcher r(7.58)=8
    assert derive_epoch_milestones(10, S_RECIPE) == dict(
        epoches=10, flat_epoch=5, no_aug_epoch=1, policy_epoch=[1, 5, 9], stop_epoch=9,
        mixup_epochs=[1, 5], copyblend_epochs=[1, 9], matcher_change_epoch=8)


def test_tiny_epochs_hand_worked():
    d = {n: derive_epoch_milestones(n, S_RECIPE) for n in range(1, 6)}
    assert (d[1]["stop_epoch"], d[1]["no_aug_epoch"], d[1]["policy_epoch"]) == (1, 0, [1, 1, 1])
    assert (d[2]["stop_epoch"], d[2]["no_aug_epoch"], d[2]["policy_epoch"]) == (1, 1, [1, 1, 1])
    assert (d[3]["stop_epoch"], d[3]["no_aug_epoch"], d[3]["policy_epoch"]) == (2, 1, [1, 1, 2])
    assert (d[4]["stop_epoch"], d[4]["no_aug_epoch"], d[4]["policy_epoch"]) == (3, 1, [1, 2, 3])
    assert (d[5]["stop_epoch"], d[5]["no_aug_epoch"], d[5]["policy_epoch"]) == (4, 1, [1, 2, 4])


def test_atto_scaled_keeps_off_ranges_and_n_flat():
    a = derive_epoch_milestones(50, ATTO_RECIPE)
    assert a["mixup_epochs"] == [40000, 15000] and a["copyblend_epochs"] == [40000, 15000]
    assert a["stop_epoch"] == 47 and a["no_aug_epoch"] == 3            # r(46.8) = 47
    assert a["policy_epoch"] == [1, 25, 40] and a["matcher_change_epoch"] == 45
    assert derive_epoch_milestones(20, N_RECIPE)["flat_epoch"] == 7800


def test_none_keys_are_left_out():
    r = dict(S_RECIPE, mixup_epochs=None, matcher_change_epoch=None)
    d = derive_epoch_milestones(66, r)
    assert "mixup_epochs" not in d and "matcher_change_epoch" not in d


@pytest.mark.parametrize("recipe", [S_RECIPE, ATTO_RECIPE, N_RECIPE])
def test_valid_for_every_epoch_count(recipe):
    for n in range(1, 301):
        d = derive_epoch_milestones(n, recipe)
        stop, no_aug = d["stop_epoch"], d["no_aug_epoch"]
        e0, e1, e2 = d["policy_epoch"]
        assert d["epoches"] == n and stop + no_aug == n and stop >= 1
        assert no_aug >= (1 if n >= 2 else 0)
        assert 1 <= e0 <= e1 <= e2 <= stop
        if stop >= 3:
            assert e0 < e1 < e2
        assert 1 <= d["matcher_change_epoch"] <= stop
        assert d["flat_epoch"] == 7800 if recipe is N_RECIPE else 0 <= d["flat_epoch"] <= stop
        for key in ("mixup_epochs", "copyblend_epochs"):
            a, b = d[key]
            if recipe is not ATTO_RECIPE:
                assert 0 <= a <= b <= stop
        if recipe["stop_epoch"] == recipe["policy_epoch"][2]:
            assert e2 == stop
        if recipe is not ATTO_RECIPE:
            assert d["mixup_epochs"][0] == e0
    with pytest.raises(ValueError):
        derive_epoch_milestones(0, recipe)

