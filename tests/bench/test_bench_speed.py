"""benchmarks/profile_step.py and benchmarks/train_speed.py: a profiled Atto step that really runs, the operator
kinds, and the side-by-side summary arithmetic (ratio to eager, compile break-even) by hand."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


profile_step, train_speed = _load("profile_step"), _load("train_speed")


def test_op_kinds():
    assert profile_step.op_kind("aten::convolution_backward") == "convolution"
    assert profile_step.op_kind("aten::native_batch_norm") == "batch_norm"
    assert profile_step.op_kind("aten::grid_sampler_2d_backward") == "grid_sample"
    assert profile_step.op_kind("aten::addmm") == "matmul"
    assert profile_step.op_kind("aten::sigmoid") == "elementwise/other"


@pytest.mark.parametrize("speed", [[], ["channels_last"]])
def test_profiled_atto_step(speed):
    torch.manual_seed(0)
    r = profile_step.profile_variant("atto", 320, 1, threads=1, warmup=0, runs=1, profiled=1, speed=speed)
    assert set(r["phases"]) == set(profile_step.PHASES)
    assert all(0 < p["share"] <= 1 and 0 <= p["outside_ops_share"] <= 1 for p in r["phases"].values())
    assert r["phases"]["matcher"]["share"] <= r["phases"]["criterion"]["share"]  # the matcher runs inside
    assert 0 <= r["python_overhead_share"] < 1 and r["op_calls_per_step"] > 100
    assert r["top_ops"][0]["share"] >= r["top_ops"][-1]["share"] > 0
    assert sum(r["kinds"].values()) <= 1 + 1e-6 and "convolution" in r["kinds"]


def test_train_speed_summary_by_hand():
    def step(mode, ms, first, rnd):
        return {"round": rnd, "kind": "step", "variant": "atto", "mode": mode, "median_ms": ms, "first_step_s": first}

    rows = [
        step("eager", 100.0, 1.0, 0),
        step("eager", 120.0, 1.2, 1),
        step("eager", 110.0, 1.1, 2),
        step("compile", 60.0, 41.1, 0),  # 40 s more for the first step, 50 ms faster per step: 800 steps
        step("compile", 50.0, 21.1, 1),
        step("compile", 70.0, 61.1, 2),
        step("channels_last", 90.0, 0.9, 0),
        {"round": 0, "kind": "epoch", "variant": "atto", "mode": "eager", "workers": 0, "epoch_s": 16.0,
         "parts_s": {"data": 2.0}},
        {"round": 0, "kind": "epoch", "variant": "atto", "mode": "eager", "workers": 1, "epoch_s": 12.0,
         "parts_s": {"data": 0.5}},
        {"args": ["step", "s", "compile"], "error": "boom"},
    ]  # fmt: skip
    s = {(r["kind"], r["mode"], r["workers"]): r for r in train_speed.summarize(rows)}
    assert s[("step", "eager", None)]["median_ms"] == 110.0 and s[("step", "eager", None)]["vs_eager"] == 1.0
    comp = s[("step", "compile", None)]
    assert comp["median_ms"] == 60.0 and comp["vs_eager"] == pytest.approx(60 / 110)
    assert comp["break_even_steps"] == pytest.approx(1000 * (41.1 - 1.1) / 50)
    assert s[("step", "channels_last", None)]["break_even_steps"] == 0.0  # faster from the first step
    assert s[("epoch", "eager", 1)]["vs_eager"] == pytest.approx(12 / 16)  # against 0 workers
    assert len(s) == 5
