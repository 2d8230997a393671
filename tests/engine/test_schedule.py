"""Flat-cosine LR schedule (hand-worked values). Epoch milestones: tests/config/test_epoch_rule.py."""

import json
from pathlib import Path

import pytest
import torch

from deimv2.engine.schedule import FlatCosineLRScheduler, flat_cosine_lr


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
        10: 0.25,  # (10/20)^2
        20: 1.0,  # end of warmup
        30: 1.0,
        40: 1.0,  # flat
        50: 0.9267766952966369,  # 0.5 + 0.5 * 0.5 * (1 + cos(pi/4))
        60: 0.75,  # 0.5 + 0.5 * 0.5 * (1 + cos(pi/2))
        80: 0.5,
        99: 0.5,
        150: 0.5,
    }
    for it, lr in expected.items():
        s.step(it)
        assert opt.param_groups[0]["lr"] == pytest.approx(lr, abs=1e-12), it
        assert opt.param_groups[1]["lr"] == pytest.approx(lr * 0.1, abs=1e-12), it
    assert s.get_last_lr() == [pytest.approx(0.5), pytest.approx(0.05)]


def test_flat_branch_first_keeps_constant_lr():
    # N recipe: flat_epoch 7800 > epochs, so after warmup the LR never decays (not even in no-aug)
    opt = _optimizer((8e-4,))
    s = FlatCosineLRScheduler(
        opt, lr_gamma=1.0, iter_per_epoch=10, total_epochs=160, warmup_iter=2000, flat_epochs=7800, no_aug_epochs=12
    )
    assert s.lr_at(1000)[0] == pytest.approx(8e-4 * 0.25)
    # 1480 iters = epoches - no_aug; 1600 = total: still the base LR
    for it in (2000, 2001, 1480 + 2000, 5000, 10**6):
        assert s.lr_at(it)[0] == 8e-4
    # same with lr_gamma 0.5: still constant because the flat branch is tested before the no-aug one
    s2 = FlatCosineLRScheduler(
        _optimizer((8e-4,)),
        lr_gamma=0.5,
        iter_per_epoch=10,
        total_epochs=160,
        warmup_iter=20,
        flat_epochs=7800,
        no_aug_epochs=12,
    )
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
    path = Path(__file__).resolve().parents[1] / "fixtures" / "official" / "lr_schedule.json"
    rows = json.loads(path.read_text(encoding="utf-8"))["flat_cosine_schedule"]
    assert len(rows) == 3
    for r in rows:
        ours = [
            flat_cosine_lr(it, r["init_lr"], r["min_lr"], r["total"], r["warmup"], r["flat"], r["no_aug"])
            for it in r["iters"]
        ]
        assert ours == r["lr"]
