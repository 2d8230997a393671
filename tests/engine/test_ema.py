"""ModelEMA against hand-worked values."""

import math

import pytest
import torch
from torch import nn

from deimv2.engine.ema import ModelEMA


class OneParam(nn.Module):
    def __init__(self, value=1.0):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([value]))
        self.bn = nn.BatchNorm1d(1)


def _set(model, w, running_mean=None):
    with torch.no_grad():
        model.w.fill_(w)
        if running_mean is not None:
            model.bn.running_mean.fill_(running_mean)


def test_two_updates_hand_worked():
    model = OneParam(1.0)
    ema = ModelEMA(model, decay=0.9, warmups=1)
    # update 1: d1 = 0.9 * (1 - e^-1) = 0.5689085029457019; ema = d1 * 1 + (1 - d1) * 3 = 1.8621829941085961
    _set(model, 3.0, running_mean=3.0)
    ema.update(model)
    assert ema.updates == 1
    assert ema.current_decay() == pytest.approx(0.5689085029457019, abs=1e-15)
    assert ema.module.w.item() == pytest.approx(1.8621829941085961, abs=1e-6)
    # BN running stats are averaged too (start 0 -> 3): (1 - d1) * 3
    assert ema.module.bn.running_mean.item() == pytest.approx((1 - 0.5689085029457019) * 3, abs=1e-6)
    # update 2: d2 = 0.9 * (1 - e^-2) = 0.7781982450870486; ema = d2 * 1.86218... + (1 - d2) * 5 = 2.558156312611012
    _set(model, 5.0)
    ema.update(model)
    assert ema.module.w.item() == pytest.approx(2.558156312611012, abs=1e-6)
    # integer buffers are not averaged
    model.bn.num_batches_tracked.fill_(7)
    ema.update(model)
    assert ema.module.bn.num_batches_tracked.item() == 0


def test_start_and_no_warmup():
    model = OneParam(0.0)
    ema = ModelEMA(model, decay=0.5, warmups=0, start=2)
    _set(model, 4.0)
    ema.update(model)
    ema.update(model)
    assert ema.updates == 0 and ema.module.w.item() == 0.0  # the first two calls are skipped
    ema.update(model)
    assert ema.updates == 1 and ema.module.w.item() == pytest.approx(2.0)  # d = 0.5 without ramp


def test_ema_is_a_detached_copy_and_unwraps():
    model = OneParam(1.0)
    ema = ModelEMA(nn.DataParallel(model), decay=0.9, warmups=1)
    assert not ema.module.w.requires_grad and not ema.module.training
    assert ema.module.w is not model.w
    _set(model, 2.0)
    assert ema.module.w.item() == 1.0


def test_restart_sets_decay_and_state_roundtrip():
    model = OneParam(1.0)
    ema = ModelEMA(model, decay=0.9999, warmups=1000)
    _set(model, 2.0)
    for _ in range(3):
        ema.update(model)
    ema.restart(0.5)
    assert ema.decay == 0.5
    assert ema.current_decay(10**6) == pytest.approx(0.5)
    assert ema.current_decay() == pytest.approx(0.5 * (1 - math.exp(-3 / 1000)))
    state = ema.state_dict()
    assert set(state) == {"module", "updates"} and state["updates"] == 3
    other = ModelEMA(OneParam(9.0), decay=0.9999, warmups=1000)
    other.load_state_dict(state)
    assert other.updates == 3 and other.module.w.item() == ema.module.w.item()


def test_shared_tensors_follow_the_official_per_key_update():
    """A parameter registered under two names (DEIM's decoder.up / decoder.decoder.up) must not drift:
    the official loop updates it once per key, so a constant weight stays constant."""

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.Parameter(torch.tensor([0.5]), requires_grad=False)
            self.inner = nn.Module()
            self.inner.up = self.up
            self.w = nn.Parameter(torch.tensor([1.0]))

    model = Shared()
    ema = ModelEMA(model, decay=0.9, warmups=0)
    for _ in range(5):
        ema.update(model)
    assert ema.module.up.item() == pytest.approx(0.5)
    with torch.no_grad():
        model.w.fill_(3.0)
        model.up.fill_(1.5)
    ema.update(model)
    # w: one update; up: two sequential updates (as official): e = d^2 * 0.5 + (1 - d^2) * 1.5
    assert ema.module.w.item() == pytest.approx(0.9 * 1.0 + 0.1 * 3.0)
    assert ema.module.up.item() == pytest.approx(0.81 * 0.5 + 0.19 * 1.5)
